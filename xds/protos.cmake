# protos.cmake - generates the protobuf-c code of xds/proto (meshfed's own
# subset of the upstream Istio and Envoy protos) plus the protobuf
# well-known types into GEN_DIR, and sets out_var to the generated .c files.
# Included by xds/CMakeLists.txt and by the standalone fuzz build
# (tests/fuzz), which compiles the same messages with other flags.
#   meshfed_xds_protos(<proto_dir> <gen_dir> <out_var>)
find_program(PROTOC_C protoc-c REQUIRED)

function(meshfed_xds_protos PROTO_DIR GEN_DIR OUT_VAR)
  set(WKT_DIR /usr/include)
  set(WKT_PROTOS any duration empty struct timestamp wrappers)
  file(GLOB_RECURSE protos CONFIGURE_DEPENDS ${PROTO_DIR}/*.proto)
  file(MAKE_DIRECTORY ${GEN_DIR})
  set(gen)
  foreach(p ${protos})
    file(RELATIVE_PATH rel ${PROTO_DIR} ${p})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    list(APPEND gen ${GEN_DIR}/${stem}.pb-c.c)
    add_custom_command(
      OUTPUT ${GEN_DIR}/${stem}.pb-c.c ${GEN_DIR}/${stem}.pb-c.h
      COMMAND ${PROTOC_C} --c_out=${GEN_DIR} -I${PROTO_DIR} -I${WKT_DIR} ${rel}
      WORKING_DIRECTORY ${PROTO_DIR}
      DEPENDS ${p} VERBATIM)
  endforeach()
  foreach(w ${WKT_PROTOS})
    list(APPEND gen ${GEN_DIR}/google/protobuf/${w}.pb-c.c)
    add_custom_command(
      OUTPUT ${GEN_DIR}/google/protobuf/${w}.pb-c.c ${GEN_DIR}/google/protobuf/${w}.pb-c.h
      COMMAND ${PROTOC_C} --c_out=${GEN_DIR} -I${WKT_DIR} google/protobuf/${w}.proto
      DEPENDS ${WKT_DIR}/google/protobuf/${w}.proto VERBATIM)
  endforeach()
  set(${OUT_VAR} ${gen} PARENT_SCOPE)
endfunction()
