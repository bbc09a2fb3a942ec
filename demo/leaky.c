/* A small "service" for the demo: it handles requests, keeps a response
 * cache that never evicts (the leak), and builds short-lived session
 * buffers. Run it under the recorder, then ask heapreplay where memory went. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct entry {
    struct entry *next;
    char *body;
};

static struct entry *cache;
void *volatile sink;

/* The leak: every response is cached and nothing is ever evicted. */
__attribute__((noinline)) static void cache_response(const char *body, size_t len) {
    struct entry *e = malloc(sizeof *e);
    e->body = malloc(len);
    memcpy(e->body, body, len);
    e->next = cache;
    cache = e;
}

/* Short-lived: allocated and freed within one request. */
__attribute__((noinline)) static char *build_session(int id) {
    char *s = malloc(4096);
    snprintf(s, 4096, "session-%d", id);
    sink = s;
    return s;
}

__attribute__((noinline)) static void handle_request(int id) {
    char *session = build_session(id);
    char body[2048];
    size_t len = 512 + (size_t)(id % 3) * 512;
    memset(body, 'x', len);
    cache_response(body, len);
    free(session);
}

int main(int argc, char **argv) {
    int requests = argc > 1 ? atoi(argv[1]) : 20000;
    for (int i = 0; i < requests; i++) handle_request(i);
    printf("handled %d requests\n", requests);
    return 0;
}
