/*
 * kube.h - the Kubernetes side of meshfed: decoding API objects into model
 * structs, loading YAML/JSON manifests (and, later, the client and informers).
 *
 * Decoding is strict about types and lenient about absent fields: every field
 * that is present must have the type and range Kubernetes gives it, fields that
 * are absent (or JSON null) take their Kubernetes defaults. Errors name the
 * object, the field path and what was wrong, e.g.
 *   "Service default/web: spec.ports[1].port: expected an integer, got string".
 */
#ifndef MESHFED_KUBE_H
#define MESHFED_KUBE_H

#include <stddef.h>

#include <jansson.h>

#include "model.h"

/* ---------- decoding ---------- */

/* Sanity limits: objects beyond these are rejected, not truncated. */
#define KUBE_MAX_PORTS 1000           /* service or slice ports */
#define KUBE_MAX_ENDPOINTS 10000      /* endpoints in one slice */
#define KUBE_MAX_IPS 16               /* clusterIPs, podIPs, LB ingress entries */
#define KUBE_MAX_LABELS 4096          /* labels on one object */
#define KUBE_MAX_RULES 1000           /* ServiceScope rules in one object */
#define KUBE_MAX_SELECTOR_VALUES 1000 /* values of one matchExpression */

/* Decodes one object of kind into a newly allocated model struct (caller
 * owns, free with model_obj_free). 0, or -1 with a reason in err naming the
 * field and what was wrong; nothing is allocated on failure.
 *
 * Notes on the mapping (see decode.c for the details):
 *  - metadata.name is required; metadata.namespace is required for Service,
 *    EndpointSlice and Pod (no "default" guessing).
 *  - Service: clusterIPs (fallback clusterIP), "None" means headless; a port
 *    without targetPort gets targetPort = port (the API server default); port
 *    names absent are "". The networking.istio.io/traffic-distribution
 *    annotation (case-insensitive) wins over spec.trafficDistribution;
 *    unknown values of either are ignored.
 *  - EndpointSlice: the kubernetes.io/service-name label is required; FQDN
 *    slices decode with 0 endpoints; an absent port is 0 (all ports).
 *  - Pod: ready = phase Running and condition Ready "True";
 *    serviceAccountName defaults to "default". */
int kube_decode(model_kind_t kind, const json_t *obj, void **out, char *err, size_t errlen);

/* Which model kind an apiVersion/kind pair names: Namespace v1, Service v1,
 * EndpointSlice discovery.k8s.io/v1, Pod v1, Node v1. 0, or -1 if none. */
int kube_kind_lookup(const char *api_version, const char *kind, model_kind_t *out);

/* Appends the rules of one ServiceScope object (apiVersion meshfed.io/v1alpha1,
 * kind ServiceScope, spec.rules[] each {namespaceSelector, servicesSelector,
 * scope: "GLOBAL"|"LOCAL"}) to r, with origin "ServiceScope/<name>[i]".
 * Selectors are metav1.LabelSelector JSON (matchLabels, matchExpressions
 * [{key, operator, values}]); an absent selector is NULL (matches everything).
 * Unknown fields in rules and selectors are rejected (a misspelt selector
 * must not silently match everything). 0, or -1 with a reason in err and r
 * unchanged (barring running out of memory half way). */
int kube_decode_servicescope(const json_t *obj, model_scope_rules_t *r, char *err, size_t errlen);

/* Same for MeshConfig serviceScopeConfigs: a JSON array of the same rule
 * objects, origins "<origin>[i]" (origin NULL means "MeshConfig"). A NULL or
 * JSON null arr adds nothing. */
int kube_decode_scope_configs(const json_t *arr, const char *origin, model_scope_rules_t *r,
                              char *err, size_t errlen);

/* ---------- manifests ---------- */

/* Called for each document; doc is borrowed (incref to keep it). Return
 * nonzero to stop loading. */
typedef int (*kube_manifest_fn)(json_t *doc, void *arg);

/* Parses a multi-document YAML (or JSON) file into JSON values, calling fn for
 * each non-empty document in order. A document whose kind is "List" (or
 * "<Kind>List" with items, as the API returns lists) is expanded into its
 * items; items of a "<Kind>List" that lack kind/apiVersion get them from the
 * list. Every document (and item) must be a mapping.
 *
 * Scalars follow the YAML 1.2 core schema: plain scalars that look like ints,
 * floats, true/false or null become those JSON types; quoted and block
 * scalars stay strings ("yes"/"on" are strings too). The !!str, !!int,
 * !!float, !!bool and !!null tags are honoured. Aliases, duplicate mapping
 * keys, non-scalar keys and non-finite floats are rejected.
 *
 * Returns 0; or -1 with "file:line:col: reason" in err (documents before the
 * bad one have already been passed to fn); or, when fn stops the load, the
 * value fn returned, with err "". */
int kube_manifest_load_file(const char *path, kube_manifest_fn fn, void *arg, char *err,
                            size_t errlen);
/* Same for text in memory; errors are reported against the name "<string>". */
int kube_manifest_load_string(const char *text, size_t len, kube_manifest_fn fn, void *arg,
                              char *err, size_t errlen);

#endif
