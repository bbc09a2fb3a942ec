/* THREADS short-lived threads, BATCH at a time; each makes 10 allocations in
 * thread_alloc, frees 9 and exits, keeping one. Prints the process's peak
 * resident memory in KiB. Usage: manythreads THREADS BATCH */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

static void *kept[100000];
void *volatile sink;

__attribute__((noinline)) void *thread_alloc(size_t n) { void *p = malloc(n); sink = p; return p; }

static void *worker(void *arg) {
    long id = (long)arg;
    void *p[10];
    for (int i = 0; i < 10; i++) p[i] = thread_alloc(32 + i);
    for (int i = 1; i < 10; i++) free(p[i]);
    kept[id] = p[0];
    return 0;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 10000, batch = argc > 2 ? atol(argv[2]) : 50;
    pthread_t t[1000];
    for (long i = 0; i < n; i += batch) {
        for (long j = 0; j < batch && i + j < n; j++) pthread_create(&t[j], 0, worker, (void *)(i + j));
        for (long j = 0; j < batch && i + j < n; j++) pthread_join(t[j], 0);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("maxrss_kb=%ld\n", ru.ru_maxrss);
    return 0;
}
