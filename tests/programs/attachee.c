/* A program that is running before it is attached to. Reads commands on
 * stdin, one per line, and answers each on stdout:
 *   ready            printed at start, once N early blocks are allocated
 *   go M             allocates M blocks of 1000 bytes from after_attach,
 *                    frees every other early block (early_free), answers
 *                    "done M"
 *   threads T R      T threads each do R rounds of malloc/free pairs (and
 *                    a calloc/realloc/free), answers "joined T"
 *   spin T           starts T threads that allocate and free until
 *                    "stop"; answers "spinning T"
 *   stop             stops them; answers "stopped ROUNDS"
 *   exit             prints "sum S" and exits with status 3
 * The early blocks are 500 bytes each from before_attach. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char **early;
static int n_early;
static char **late;
static int n_late;

__attribute__((noinline)) static char *before_attach(int i) {
  char *p = malloc(500);
  memset(p, i, 500);
  return p;
}

__attribute__((noinline)) static char *after_attach(int i) {
  char *p = malloc(1000);
  memset(p, i, 1000);
  return p;
}

__attribute__((noinline)) static void early_free(int i) {
  free(early[i]);
  early[i] = NULL;
}

static int rounds;
static volatile int spinning;
static long spun[64];
static pthread_t spinners[64];
static int n_spinners;

static void *spinner(void *arg) {
  long id = (long)arg;
  while (spinning) {
    char *p = malloc(32 + (spun[id] % 13) * 8);
    p[0] = (char)id;
    char *q = realloc(calloc(2, 16), 128);
    free(p);
    free(q);
    spun[id]++;
  }
  return NULL;
}

static void *worker(void *arg) {
  long id = (long)arg;
  for (int r = 0; r < rounds; r++) {
    char *p = malloc(64 + (r % 7) * 16);
    p[0] = (char)id;
    char *q = calloc(4, 32);
    q = realloc(q, 256);
    free(q);
    free(p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  n_early = argc > 1 ? atoi(argv[1]) : 100;
  early = calloc(n_early, sizeof *early);
  for (int i = 0; i < n_early; i++) early[i] = before_attach(i);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("ready\n");
  char line[256];
  long sum = 0;
  while (fgets(line, sizeof line, stdin)) {
    int a = 0, b = 0;
    if (sscanf(line, "go %d", &a) == 1) {
      late = realloc(late, (n_late + a) * sizeof *late);
      for (int i = 0; i < a; i++) late[n_late + i] = after_attach(i);
      n_late += a;
      for (int i = 0; i < n_early; i += 2)
        if (early[i]) early_free(i);
      printf("done %d\n", a);
    } else if (sscanf(line, "threads %d %d", &a, &b) == 2) {
      pthread_t t[64];
      rounds = b;
      if (a > 64) a = 64;
      for (long i = 0; i < a; i++) pthread_create(&t[i], NULL, worker, (void *)i);
      for (int i = 0; i < a; i++) pthread_join(t[i], NULL);
      printf("joined %d\n", a);
    } else if (sscanf(line, "spin %d", &a) == 1) {
      spinning = 1;
      n_spinners = a > 64 ? 64 : a;
      for (long i = 0; i < n_spinners; i++) pthread_create(&spinners[i], NULL, spinner, (void *)i);
      printf("spinning %d\n", n_spinners);
    } else if (strncmp(line, "stop", 4) == 0) {
      long total = 0;
      spinning = 0;
      for (int i = 0; i < n_spinners; i++) pthread_join(spinners[i], NULL);
      for (int i = 0; i < n_spinners; i++) total += spun[i];
      printf("stopped %ld\n", total > 0 ? 1L : 0L);
    } else if (strncmp(line, "exit", 4) == 0) {
      for (int i = 0; i < n_late; i++) sum += late[i][0] + 1;
      for (int i = 0; i < n_early; i++) sum += early[i] ? early[i][0] : 0;
      printf("sum %ld\n", sum);
      return 3;
    }
  }
  return 0;
}
