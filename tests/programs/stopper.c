/* Stops and restarts gperftools' heap profiler from its own code
 * (HeapProfilerStop, HeapProfilerStart with HEAPPROFILE's prefix), and
 * frees across the stops: a profile after a restart counts only what was
 * allocated since, as gperftools does. Its profiler comes from what is
 * preloaded (libtcmalloc or librecord.so): the API is declared weak. */
#include <gperftools/heap-profiler.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#pragma weak HeapProfilerStart
#pragma weak HeapProfilerStop
#pragma weak HeapProfilerDump

void *volatile sink;
static void *before[20], *stopped[10], *after[10];

__attribute__((noinline)) void *before_site(void) { void *p = malloc(1000); sink = p; return p; }
__attribute__((noinline)) void *stopped_site(void) { void *p = malloc(2000); sink = p; return p; }
__attribute__((noinline)) void *after_site(void) { void *p = malloc(3000); sink = p; return p; }

int main(int argc, char **argv) {
    /* With `slow`, it pauses before each stop, so that a replay following
     * the trace meets each in a later round. */
    int slow = argc > 1 && strcmp(argv[1], "slow") == 0;
    if (!HeapProfilerStart || !getenv("HEAPPROFILE")) return 2;
    /* libtcmalloc marks the variable's first byte once it has read it. */
    char prefix[4096];
    strncpy(prefix, getenv("HEAPPROFILE"), sizeof prefix - 1);
    prefix[sizeof prefix - 1] = 0;
    prefix[0] &= 0x7f;
    for (int i = 0; i < 20; i++) before[i] = before_site();
    HeapProfilerDump("one");
    if (slow) usleep(1500000);
    for (int i = 15; i < 20; i++) free(before[i]);
    HeapProfilerDump("one, five freed");
    HeapProfilerStop();
    for (int i = 0; i < 10; i++) stopped[i] = stopped_site();
    for (int i = 0; i < 10; i++) free(before[i]);
    HeapProfilerDump("while stopped");
    HeapProfilerStart(prefix);
    for (int i = 0; i < 10; i++) after[i] = after_site();
    for (int i = 10; i < 15; i++) free(before[i]);
    for (int i = 0; i < 5; i++) free(stopped[i]);
    for (int i = 0; i < 3; i++) free(after[i]);
    HeapProfilerDump("two");
    if (slow) usleep(1500000);
    HeapProfilerStop();
    HeapProfilerStart(prefix);
    for (int i = 3; i < 8; i++) free(after[i]);
    for (int i = 0; i < 5; i++) after[i] = after_site();
    HeapProfilerDump("three");
    return 0;
}
