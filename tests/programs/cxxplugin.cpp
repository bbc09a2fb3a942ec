// A C++ plugin for loader.c, loaded apart (RTLD_LOCAL) by a C program: its
// C++ runtime is not among the program's libraries. plugin_alloc keeps
// 64 over-aligned objects (exit 3 if one is not aligned), frees them but
// 16, and keeps 1 MiB from new[].
#include <cstdint>
#include <cstdlib>

struct alignas(64) Line { char bytes[64]; };
static Line *lines[64];
char *volatile kept;

extern "C" __attribute__((noinline)) void plugin_alloc() {
    for (auto &l : lines) {
        l = new Line;
        if (reinterpret_cast<std::uintptr_t>(l) % 64 != 0) std::exit(3);
    }
    for (int i = 16; i < 64; i++) delete lines[i];
    kept = new char[1 << 20];
}
