/*
 * fuzz_xds_request.c - xDS requests from the wire.
 *
 * Input: one flags byte, then messages, each a 2-byte big-endian length and
 * that many bytes (the last one takes whatever is left).
 * Every message is unpacked both as envoy.service.discovery.v3.
 * DeltaDiscoveryRequest and as DiscoveryRequest (protobuf-c); a message that
 * unpacks is walked field by field (generic descriptor walk, plus the
 * server's own lookups: node id, CLUSTER_ID/NETWORK metadata, type URLs,
 * resource names, initial versions, nonce, error detail) and re-packed; the
 * re-packed bytes must unpack and re-pack to the same bytes.
 *
 * With FUZZ_XDS_STREAM (xds/ linked in), the messages are also fed in order
 * to xds_stream_on_message (xds/xds_int.h) on one fake stream, delta or
 * SotW by flags bit 0. The stream is marked as sending, so nothing reaches
 * grpc: xds_stream_pump returns at once and a rejection only records its
 * status. This drives take_node, type_state, check_names, take_ack and the
 * subscription bookkeeping (base maps) exactly as the server does.
 */
#include "envoy/service/discovery/v3/discovery.pb-c.h"
#include "google/protobuf/struct.pb-c.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifdef FUZZ_XDS_STREAM
#include "xds_int.h"
#include <grpc/slice.h>
#endif

static volatile size_t sink;
static size_t unknown; /* unknown fields seen by the last walk */

static void walk_msg(const ProtobufCMessage *m, int depth);

static void walk_value(const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_STRING: {
        const char *s = *(char *const *)p;
        if (s)
            sink += strlen(s);
        break;
    }
    case PROTOBUF_C_TYPE_BYTES: {
        const ProtobufCBinaryData *b = p;
        for (size_t i = 0; i < b->len; i++)
            sink += b->data[i];
        break;
    }
    case PROTOBUF_C_TYPE_MESSAGE: {
        const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
        if (sub)
            walk_msg(sub, depth + 1);
        break;
    }
    case PROTOBUF_C_TYPE_ENUM: {
        const ProtobufCEnumDescriptor *ed = f->descriptor;
        (void)protobuf_c_enum_descriptor_get_value(ed, *(const int *)p);
        break;
    }
    default:
        sink += *(const uint8_t *)p;
        break;
    }
}

static size_t elem_size(const ProtobufCFieldDescriptor *f)
{
    switch (f->type) {
    case PROTOBUF_C_TYPE_INT32:
    case PROTOBUF_C_TYPE_SINT32:
    case PROTOBUF_C_TYPE_SFIXED32:
    case PROTOBUF_C_TYPE_UINT32:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_ENUM:
        return 4;
    case PROTOBUF_C_TYPE_INT64:
    case PROTOBUF_C_TYPE_SINT64:
    case PROTOBUF_C_TYPE_SFIXED64:
    case PROTOBUF_C_TYPE_UINT64:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_DOUBLE:
        return 8;
    case PROTOBUF_C_TYPE_BOOL:
        return sizeof(protobuf_c_boolean);
    case PROTOBUF_C_TYPE_STRING:
        return sizeof(char *);
    case PROTOBUF_C_TYPE_BYTES:
        return sizeof(ProtobufCBinaryData);
    case PROTOBUF_C_TYPE_MESSAGE:
        return sizeof(ProtobufCMessage *);
    }
    abort();
}

/* Every field of every (sub)message, through the descriptors. */
static void walk_msg(const ProtobufCMessage *m, int depth)
{
    if (depth > 200)
        return; /* protobuf-c limits nesting itself; be safe */
    const ProtobufCMessageDescriptor *d = m->descriptor;
    if (!protobuf_c_message_check(m))
        abort(); /* unpack produced a message that fails its own check */
    unknown += m->n_unknown_fields;
    for (unsigned i = 0; i < d->n_fields; i++) {
        const ProtobufCFieldDescriptor *f = &d->fields[i];
        const char *base = (const char *)m;
        if (f->label == PROTOBUF_C_LABEL_REPEATED) {
            size_t n = *(const size_t *)(base + f->quantifier_offset);
            const char *arr = *(char *const *)(base + f->offset);
            if (n && !arr)
                abort();
            for (size_t k = 0; k < n; k++)
                walk_value(f, arr + k * elem_size(f), depth);
        } else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            uint32_t which = *(const uint32_t *)(base + f->quantifier_offset);
            if (which == f->id)
                walk_value(f, base + f->offset, depth);
        } else {
            walk_value(f, base + f->offset, depth);
        }
    }
}

/* What stream.c reads: string metadata values by key. */
static const char *meta_string(const Google__Protobuf__Struct *md, const char *key)
{
    for (size_t i = 0; md && i < md->n_fields; i++) {
        const Google__Protobuf__Struct__FieldsEntry *e = md->fields[i];
        if (e->key && strcmp(e->key, key) == 0 && e->value &&
            e->value->kind_case == GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE)
            return e->value->string_value;
    }
    return NULL;
}

static void walk_node(const Envoy__Config__Core__V3__Node *node)
{
    if (!node)
        return;
    static const char *const keys[] = {
        "CLUSTER_ID", "ISTIO_META_CLUSTER_ID", "NETWORK", "ISTIO_META_NETWORK", "NAME", "NAMESPACE",
        NULL};
    sink += node->id ? strlen(node->id) : 0;
    for (const char *const *k = keys; *k; k++) {
        const char *v = meta_string(node->metadata, *k);
        if (v)
            sink += strlen(v);
    }
}

/* Only for messages without unknown fields: protobuf-c keeps those as raw
 * bytes (it even accepts field number 0, which it then cannot re-read), and
 * the server never re-encodes a request anyway. */
static void roundtrip(const ProtobufCMessage *m)
{
    if (unknown)
        return;
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *a = malloc(n ? n : 1);
    if (protobuf_c_message_pack(m, a) != n)
        abort();
    ProtobufCMessage *m2 = protobuf_c_message_unpack(m->descriptor, NULL, n, a);
    if (!m2)
        abort(); /* what we packed must unpack */
    size_t n2 = protobuf_c_message_get_packed_size(m2);
    uint8_t *b = malloc(n2 ? n2 : 1);
    if (protobuf_c_message_pack(m2, b) != n2 || n2 != n || memcmp(a, b, n) != 0)
        abort(); /* pack(unpack(pack(x))) == pack(x) */
    free(a);
    free(b);
    protobuf_c_message_free_unpacked(m2, NULL);
}

static void walk_bytes(const uint8_t *p, size_t len)
{
    Envoy__Service__Discovery__V3__DeltaDiscoveryRequest *d =
        envoy__service__discovery__v3__delta_discovery_request__unpack(NULL, len, p);
    if (d) {
        unknown = 0;
        walk_msg(&d->base, 0);
        walk_node(d->node);
        sink += d->type_url ? strlen(d->type_url) : 0;
        for (size_t i = 0; i < d->n_resource_names_subscribe; i++)
            sink += strlen(d->resource_names_subscribe[i]);
        for (size_t i = 0; i < d->n_resource_names_unsubscribe; i++)
            sink += strlen(d->resource_names_unsubscribe[i]);
        for (size_t i = 0; i < d->n_initial_resource_versions; i++) {
            const char *k = d->initial_resource_versions[i]->key;
            const char *v = d->initial_resource_versions[i]->value;
            if (!k || !v)
                abort(); /* stream.c uses both without a check */
            sink += strlen(k) + strlen(v);
        }
        if (d->error_detail && d->error_detail->message)
            sink += strlen(d->error_detail->message);
        roundtrip(&d->base);
        envoy__service__discovery__v3__delta_discovery_request__free_unpacked(d, NULL);
    }
    Envoy__Service__Discovery__V3__DiscoveryRequest *s =
        envoy__service__discovery__v3__discovery_request__unpack(NULL, len, p);
    if (s) {
        unknown = 0;
        walk_msg(&s->base, 0);
        walk_node(s->node);
        for (size_t i = 0; i < s->n_resource_names; i++)
            sink += strlen(s->resource_names[i]);
        sink += s->response_nonce ? strlen(s->response_nonce) : 0;
        roundtrip(&s->base);
        envoy__service__discovery__v3__discovery_request__free_unpacked(s, NULL);
    }
}

#ifdef FUZZ_XDS_STREAM
static const char *network_of(void *arg, const char *cluster)
{
    (void)arg;
    return strcmp(cluster, "c2") == 0 ? "n2" : "n1";
}
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
#ifdef FUZZ_XDS_STREAM
    unsigned flags = data[0];
    xds_server_t srv;
    memset(&srv, 0, sizeof(srv));
    if (flags & 2) {
        srv.network_of = network_of;
    }
    xds_stream_t st;
    memset(&st, 0, sizeof(st));
    st.srv = &srv;
    st.delta = flags & 1;
    st.open = true;
    st.sending = true; /* see the header comment: keeps grpc out */
#endif
    size_t i = 1;
    for (int k = 0; k < 8 && i <= size; k++) {
        size_t len = size - i;
        if (k < 7 && len >= 2) {
            size_t want = ((size_t)data[i] << 8) | data[i + 1];
            i += 2;
            len = size - i < want ? size - i : want;
        }
        /* an exact-size heap copy, so ASan sees reads past the message */
        uint8_t *msg = malloc(len ? len : 1);
        memcpy(msg, data + i, len);
        walk_bytes(msg, len);
#ifdef FUZZ_XDS_STREAM
        if (!st.closing)
            xds_stream_on_message(&st, msg, len);
        if (st.closing && !st.close_pending)
            abort(); /* would have sent a status while a send is in flight */
        if (st.node_id && (!st.cluster || !st.network || st.view.cluster != st.cluster))
            abort();
#endif
        free(msg);
        i += len;
        if (i >= size)
            break;
    }
#ifdef FUZZ_XDS_STREAM
    if (st.has_close_msg)
        grpc_slice_unref(st.close_msg);
    xds_stream_state_free(&st);
#endif
    return 0;
}
