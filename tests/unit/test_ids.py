import threading
import time

from durably.core.ids import _ALPHABET, new_id


def _ms(i: str) -> int:
    value = 0
    for ch in i:
        value = value * 32 + _ALPHABET.index(ch)
    return value >> 80


def test_shape():
    i = new_id()
    assert len(i) == 26 and set(i) <= set(_ALPHABET)


def test_time_ordered():
    before = int(time.time() * 1000)
    i = new_id()
    after = int(time.time() * 1000)
    assert before <= _ms(i) <= after + 1
    a = new_id()
    time.sleep(0.003)
    b = new_id()
    assert a < b and _ms(a) < _ms(b)


def test_monotonic_and_unique_in_a_tight_loop():
    ids = [new_id() for _ in range(20000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_unique_across_threads():
    out: list[list[str]] = [[] for _ in range(4)]

    def gen(k):
        out[k].extend(new_id() for _ in range(5000))

    threads = [threading.Thread(target=gen, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [i for part in out for i in part]
    assert len(set(everything)) == len(everything)
    for part in out:
        assert part == sorted(part)
