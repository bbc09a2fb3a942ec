/* The first allocation of each thread happens inside pthread_getattr_np
 * (glibc reads /proc/self/maps for the main thread and allocates a cpu set
 * under the thread's lock), as in every Rust program at start-up. Then each
 * thread keeps 100 blocks from kept_alloc. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>

static void *kept[200];
void *volatile sink;

static void ask_attributes(void) {
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) abort();
    pthread_attr_destroy(&attr);
}

__attribute__((noinline)) void kept_alloc(int base) {
    for (int i = 0; i < 100; i++) kept[base + i] = malloc(64);
    sink = kept[base];
}

static void *worker(void *arg) {
    (void)arg;
    ask_attributes();
    kept_alloc(100);
    return 0;
}

int main(void) {
    ask_attributes();
    kept_alloc(0);
    pthread_t t;
    pthread_create(&t, 0, worker, 0);
    pthread_join(t, 0);
    return 0;
}
