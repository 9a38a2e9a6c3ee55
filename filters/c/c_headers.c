/*
 * c_headers: a Proxy-Wasm filter written directly against ABI 0.2.1, without an SDK.
 *
 * Request headers: adds `x-c-request: 1`, logs `c_headers: request <:path>` at info and
 * remembers whether the request carried `x-c-deny`. Response headers: adds
 * `x-c-response: <context id>`; for a request that carried `x-c-deny` the response is
 * replaced by a local reply 401 `denied by c\n`, so the decision is taken after the
 * upstream (or a direct response) answered.
 *
 * Built as a WASI reactor with clang and wasi-libc (see Makefile): `_initialize` runs the
 * constructors, `proxy_on_memory_allocate` is malloc.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

/* Enumerations of ABI 0.2.1 (spec section 1). */
enum { STATUS_OK = 0, STATUS_NOT_FOUND = 1 };
enum { LOG_INFO = 2, LOG_ERROR = 4 };
enum { MAP_REQUEST_HEADERS = 0, MAP_RESPONSE_HEADERS = 2 };
enum { ACTION_CONTINUE = 0, ACTION_PAUSE = 1 };
enum { GRPC_STATUS_NONE = -1 };

IMPORT(proxy_log)
uint32_t proxy_log(uint32_t level, const char *msg, size_t msg_size);
IMPORT(proxy_get_header_map_value)
uint32_t proxy_get_header_map_value(uint32_t map, const char *key, size_t key_size,
                                    char **value, size_t *value_size);
IMPORT(proxy_add_header_map_value)
uint32_t proxy_add_header_map_value(uint32_t map, const char *key, size_t key_size,
                                    const char *value, size_t value_size);
IMPORT(proxy_send_local_response)
uint32_t proxy_send_local_response(uint32_t status, const char *details, size_t details_size,
                                   const char *body, size_t body_size,
                                   const char *headers, size_t headers_size,
                                   int32_t grpc_status);

/* One per live stream context; a root context has none. */
struct stream {
    uint32_t id;
    int deny;     /* the request carried x-c-deny */
    int replied;  /* the local reply was sent; its own response headers pass through */
    struct stream *next;
};

static struct stream *streams;

static struct stream *find_stream(uint32_t id) {
    for (struct stream *s = streams; s != NULL; s = s->next) {
        if (s->id == id) {
            return s;
        }
    }
    return NULL;
}

static void log_str(uint32_t level, const char *msg, size_t len) {
    proxy_log(level, msg, len);
}

#define LIT(s) (s), (sizeof(s) - 1)

/* Writes `value` in decimal at `out` (room for 10 digits); returns the length. */
static size_t format_u32(uint32_t value, char *out) {
    char digits[10];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (size_t i = 0; i < n; i++) {
        out[i] = digits[n - 1 - i];
    }
    return n;
}

EXPORT(proxy_abi_version_0_2_1)
void proxy_abi_version_0_2_1(void) {}

EXPORT(proxy_on_memory_allocate)
void *proxy_on_memory_allocate(size_t size) {
    return malloc(size);
}

EXPORT(proxy_on_context_create)
void proxy_on_context_create(uint32_t context_id, uint32_t parent_context_id) {
    if (parent_context_id == 0) {
        return; /* the root context keeps no state */
    }
    struct stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        log_str(LOG_ERROR, LIT("c_headers: out of memory"));
        return;
    }
    s->id = context_id;
    s->next = streams;
    streams = s;
}

EXPORT(proxy_on_vm_start)
uint32_t proxy_on_vm_start(uint32_t root_context_id, uint32_t vm_configuration_size) {
    (void)root_context_id;
    (void)vm_configuration_size;
    return 1;
}

EXPORT(proxy_on_configure)
uint32_t proxy_on_configure(uint32_t root_context_id, uint32_t plugin_configuration_size) {
    (void)root_context_id;
    (void)plugin_configuration_size;
    return 1; /* the configuration is ignored */
}

EXPORT(proxy_on_request_headers)
uint32_t proxy_on_request_headers(uint32_t context_id, uint32_t num_headers,
                                  uint32_t end_of_stream) {
    (void)num_headers;
    (void)end_of_stream;
    struct stream *s = find_stream(context_id);

    char *path = NULL;
    size_t path_size = 0;
    if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, LIT(":path"), &path, &path_size) !=
        STATUS_OK) {
        path = NULL;
        path_size = 0;
    }
    static const char prefix[] = "c_headers: request ";
    char *line = malloc(sizeof(prefix) - 1 + path_size);
    if (line != NULL) {
        memcpy(line, prefix, sizeof(prefix) - 1);
        if (path_size != 0) {
            memcpy(line + sizeof(prefix) - 1, path, path_size);
        }
        log_str(LOG_INFO, line, sizeof(prefix) - 1 + path_size);
        free(line);
    }
    free(path);

    /* Present with any value, the empty one included. */
    char *deny = NULL;
    size_t deny_size = 0;
    if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, LIT("x-c-deny"), &deny, &deny_size) ==
            STATUS_OK &&
        s != NULL) {
        s->deny = 1;
    }
    free(deny);

    proxy_add_header_map_value(MAP_REQUEST_HEADERS, LIT("x-c-request"), LIT("1"));
    return ACTION_CONTINUE;
}

EXPORT(proxy_on_response_headers)
uint32_t proxy_on_response_headers(uint32_t context_id, uint32_t num_headers,
                                   uint32_t end_of_stream) {
    (void)num_headers;
    (void)end_of_stream;
    struct stream *s = find_stream(context_id);

    if (s != NULL && s->deny && !s->replied) {
        s->replied = 1;
        proxy_send_local_response(401, LIT("c_headers_denied"), LIT("denied by c\n"), NULL, 0,
                                  GRPC_STATUS_NONE);
        return ACTION_PAUSE;
    }

    char id[10];
    size_t id_size = format_u32(context_id, id);
    proxy_add_header_map_value(MAP_RESPONSE_HEADERS, LIT("x-c-response"), id, id_size);
    return ACTION_CONTINUE;
}

EXPORT(proxy_on_log)
void proxy_on_log(uint32_t context_id) {
    (void)context_id;
}

EXPORT(proxy_on_done)
uint32_t proxy_on_done(uint32_t context_id) {
    (void)context_id;
    return 1; /* done at once: nothing pending */
}

EXPORT(proxy_on_delete)
void proxy_on_delete(uint32_t context_id) {
    for (struct stream **link = &streams; *link != NULL; link = &(*link)->next) {
        if ((*link)->id == context_id) {
            struct stream *s = *link;
            *link = s->next;
            free(s);
            return;
        }
    }
}
