"""The dump's allocator setting: batches of buffers of a few MB, made and freed, stop costing fresh pages."""

import subprocess
import sys
import textwrap

# What a dump's batches do to the allocator: this thread makes buffers of ~2 MB (a little bigger each time, as
# batches vary) and hands them to another that makes and frees a copy of each (as the hashing and writing
# threads do), many times; prints the minor page faults that cost. Untuned, glibc maps such buffers afresh.
CHURN = textwrap.dedent(
    """
    import queue, resource, sys, threading
    if sys.argv[1] == "tuned":
        from patina_assets.engine import allocator
        assert allocator.tune()
    handed = queue.Queue(4)
    def consume():
        while (item := handed.get()) is not None:
            item.upper()
    consumer = threading.Thread(target=consume)
    consumer.start()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for i in range(200):
        joined = b"x" * ((2 << 20) + i * 4096)
        handed.put(joined.replace(b"x", b"y"))
        del joined
    handed.put(None)
    consumer.join()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


def faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_tuned_allocator_reuses_freed_batch_buffers_instead_of_faulting_in_new_pages():
    untuned, tuned = faults("untuned"), faults("tuned")
    # 200 rounds x 3 buffers of ~512 pages: ~250,000 faults untuned (measured); ~5,000 tuned.
    assert untuned > 100_000
    assert tuned < untuned // 20


def test_children_of_a_dump_inherit_the_setting_through_their_environment():
    from patina_assets.engine import allocator, lifeline

    env = lifeline.child_environment({})
    assert env["MALLOC_MMAP_THRESHOLD_"] == str(allocator.MMAP_THRESHOLD)
    assert env["MALLOC_TRIM_THRESHOLD_"] == str(allocator.TRIM_THRESHOLD)
