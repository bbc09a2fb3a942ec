// A program written against gperftools' heap-profiler.h: it allocates in
// phases and calls HeapProfilerDump after each, from C++ code, as a program
// that profiles itself does. Its profiler comes from what is preloaded
// (libtcmalloc or librecord.so): the API is declared weak, so it links
// without either. Usage: dumper PHASES
#include <gperftools/heap-profiler.h>
#pragma weak IsHeapProfilerRunning
#pragma weak HeapProfilerDump
#pragma weak GetHeapProfile
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static std::vector<std::string *> kept;

__attribute__((noinline)) void phase_site(int phase) {
    for (int i = 0; i < 1000 * (phase + 1); i++) kept.push_back(new std::string(100 + i % 300, 'x'));
}

__attribute__((noinline)) void release_some() {
    for (size_t i = 0; i < kept.size(); i += 2) {
        delete kept[i];
        kept[i] = nullptr;
    }
}

int main(int argc, char **argv) {
    int phases = argc > 1 ? atoi(argv[1]) : 3;
    if (!IsHeapProfilerRunning || !IsHeapProfilerRunning()) {
        fprintf(stderr, "the heap profiler is not running\n");
        return 2;
    }
    for (int p = 0; p < phases; p++) {
        phase_site(p);
        std::string reason = "after phase " + std::to_string(p + 1);
        HeapProfilerDump(reason.c_str());
        if (p % 2 == 1) release_some();
    }
    char *profile = GetHeapProfile();
    if (!profile || std::string(profile).rfind("heap profile:", 0) != 0) {
        fprintf(stderr, "GetHeapProfile gave no profile\n");
        return 3;
    }
    free(profile);
    return 0;
}
