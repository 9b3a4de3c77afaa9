#!/bin/sh
# make_cacerts.sh DIR - the CAs and CSRs tests/test_ca.c signs with, made by
# the openssl CLI (independent of meshfed's own OpenSSL calls). In DIR:
#   root.pem/root.key     a root CA (RSA 2048)
#   good/                 Istio cacerts: an EC P-256 intermediate under root,
#                         cert-chain.pem = intermediate then root
#   short/                same, intermediate valid one day (NotAfter clamp)
#   mismatch/             good with the key of another intermediate
#   notca/                an intermediate without CA:TRUE
#   otherroot/            good with the root-cert.pem of another root
#   nochain/              good with a cert-chain.pem holding only the root
#   csr/                  rsa2048.csr (CN and DNS+URI SANs of its own),
#                         ec256.csr, rsa1024.csr, ec384.csr, ed25519.csr
set -eu
D=$1
mkdir -p "$D/csr"
cd "$D"
cat >ext.cnf <<'CNF'
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[notca]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
CNF
q() { "$@" >/dev/null 2>&1 || { echo "make_cacerts: failed: $*" >&2; exit 1; }; }
root() { # $1 name
    q openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 3650 \
        -subj "/O=meshfed-test/CN=$1" -config ext.cnf -extensions ca
}
inter() { # $1 dir, $2 days, $3 extensions section
    mkdir -p "$1"
    q openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$1/ca-key.pem" -out "$1/ca.csr" -subj "/O=meshfed-test/CN=intermediate-$1"
    q openssl x509 -req -in "$1/ca.csr" -CA root.pem -CAkey root.key -set_serial "0x$(openssl rand -hex 8)" \
        -days "$2" -extfile ext.cnf -extensions "$3" -out "$1/ca-cert.pem"
    cat "$1/ca-cert.pem" root.pem >"$1/cert-chain.pem"
    cp root.pem "$1/root-cert.pem"
}
root root
root root2
inter good 730 ca
inter short 1 ca
inter notca 730 notca
inter other 730 ca
mkdir -p mismatch otherroot nochain
cp good/*.pem mismatch/ && cp other/ca-key.pem mismatch/ca-key.pem
cp good/*.pem otherroot/ && cp root2.pem otherroot/root-cert.pem
cp good/*.pem nochain/ && cp root.pem nochain/cert-chain.pem
csr() { # $1 name, $2.. -newkey arguments
    n=$1
    shift
    q openssl req -new "$@" -nodes -keyout "csr/$n.key" -out "csr/$n.csr" -subj "/O=meshfed-test"
}
q openssl req -new -newkey rsa:2048 -nodes -keyout csr/rsa2048.key -out csr/rsa2048.csr \
    -subj "/CN=evil.example" \
    -addext "subjectAltName=URI:spiffe://evil.example/ns/kube-system/sa/admin,DNS:evil.example"
csr ec256 -newkey ec -pkeyopt ec_paramgen_curve:P-256
csr rsa1024 -newkey rsa:1024
csr ec384 -newkey ec -pkeyopt ec_paramgen_curve:P-384
csr ed25519 -newkey ed25519
