/*
 * threads N T: the churn of churn.c (see churn.h), N malloc/free pairs in
 * total, split evenly over T pthreads running at once. The same N with
 * T=1 and T=8 shows what contention between threads costs.
 * Prints "mallocs=N frees=M", summed over the threads.
 */
#include <pthread.h>

#include "churn.h"

#define MAX_THREADS 256

struct worker {
    pthread_t thread;
    uint64_t n;
    uint64_t seed;
    uint64_t sum;
    struct churn state;
};

static struct worker workers[MAX_THREADS];

static void *work(void *arg)
{
    struct worker *w = arg;
    w->sum = churn_run(&w->state, w->n, w->seed);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: threads N T\n");
        return 2;
    }
    uint64_t n = churn_parse_count("N", argv[1]);
    uint64_t t = churn_parse_count("T", argv[2]);
    if (t < 1 || t > MAX_THREADS) {
        fprintf(stderr, "threads: T must be 1..%d\n", MAX_THREADS);
        return 2;
    }
    for (uint64_t i = 0; i < t; i++) {
        workers[i].n = n / t + (i < n % t);
        workers[i].seed = 0x9e3779b97f4a7c15ull * (i + 1);
        int rc = pthread_create(&workers[i].thread, NULL, work, &workers[i]);
        if (rc != 0) {
            fprintf(stderr, "threads: pthread_create: %s\n", strerror(rc));
            return 2;
        }
    }
    uint64_t mallocs = 0, frees = 0, sum = 0;
    for (uint64_t i = 0; i < t; i++) {
        pthread_join(workers[i].thread, NULL);
        mallocs += workers[i].state.mallocs;
        frees += workers[i].state.frees;
        sum += workers[i].sum;
    }
    fprintf(stderr, "threads: checksum %llu\n", (unsigned long long)sum);
    printf("mallocs=%llu frees=%llu\n", (unsigned long long)mallocs,
           (unsigned long long)frees);
    return 0;
}
