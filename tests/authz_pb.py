#!/usr/bin/python3
"""Decodes an istio.security.Authorization with the Python protobuf runtime,
compiled from xds/proto, and compares it (as proto3 JSON) with an expected
JSON document: an encoder check independent of protobuf-c.

usage: authz_pb.py <source root> <message file> <expected JSON>
Exit 0 when equal, 1 with both printed when not, 2 on a usage or tool error.
"""
import json
import os
import subprocess
import sys
import tempfile


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    src, path, expected = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    out = tempfile.mkdtemp(prefix="meshfed-authz-pb-")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", os.path.join(src, "xds/proto"),
                    "-I", "/usr/include", "--python_out", out, "authorization.proto",
                    "workload.proto"], check=True)
    sys.path.insert(0, out)
    import authorization_pb2  # noqa: E402
    from google.protobuf import json_format  # noqa: E402

    msg = authorization_pb2.Authorization()
    with open(path, "rb") as f:
        msg.ParseFromString(f.read())
    got = json_format.MessageToDict(msg)
    if got != expected:
        print("got:     ", json.dumps(got, sort_keys=True))
        print("expected:", json.dumps(expected, sort_keys=True))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
