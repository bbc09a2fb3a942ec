"""interp.py ROUNDS: dict/list/string churn for benches/run.sh.

Run with PYTHONMALLOC=malloc so that every object goes through malloc/free
instead of pymalloc's arenas. Each round builds a dict of lists of strings,
sorts and rearranges them, round-trips part of it through json, keeps a
little of the result alive in a bounded ring and drops the rest. Prints a
checksum that depends only on ROUNDS, so runs can be compared.
"""

import json
import random
import sys
import zlib


def build(rng, width):
    """A dict of lists of strings and small records."""
    table = {}
    for i in range(width):
        key = "k%05d-%s" % (i, "".join(rng.choice("abcdefgh") for _ in range(6)))
        words = ["w%d" % rng.randrange(100000) for _ in range(rng.randrange(4, 24))]
        table[key] = {
            "words": words,
            "joined": " ".join(words),
            "n": len(words),
            "pairs": [(w, len(w)) for w in words[:5]],
        }
    return table


def churn(table):
    """Sorting, slicing, string building, set and dict rebuilding."""
    keys = sorted(table, key=lambda k: (table[k]["n"], k))
    upper = {k.upper(): v["joined"].upper().split() for k, v in table.items()}
    seen = set()
    for words in upper.values():
        seen.update(words)
    merged = sorted(seen)[: 200]
    text = ",".join(merged) + "|" + "/".join(keys[:50])
    inverted = {}
    for k, v in table.items():
        for w in v["words"]:
            inverted.setdefault(w, []).append(k)
    return zlib.crc32(text.encode()) ^ len(inverted) ^ len(upper)


def round_trip(table):
    """json.dumps and json.loads of part of the table."""
    part = dict(list(table.items())[: len(table) // 2])
    blob = json.dumps(part, sort_keys=True)
    back = json.loads(blob)
    assert len(back) == len(part)
    return zlib.crc32(blob.encode())


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: interp.py ROUNDS")
    rounds = int(sys.argv[1])
    rng = random.Random(42)
    ring = [None] * 32
    checksum = 0
    for r in range(rounds):
        table = build(rng, 200)
        checksum = (checksum * 31 + churn(table)) & 0xFFFFFFFF
        checksum = (checksum * 31 + round_trip(table)) & 0xFFFFFFFF
        # Keep a slice alive for a while, so frees interleave with
        # allocations instead of the heap emptying every round.
        ring[r % len(ring)] = {k: v["words"][:3] for k, v in list(table.items())[:40]}
        del table
    alive = sum(len(x) for x in ring if x)
    print("rounds=%d checksum=%08x alive=%d" % (rounds, checksum, alive))


if __name__ == "__main__":
    main()
