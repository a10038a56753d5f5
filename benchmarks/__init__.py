"""Speed and memory benchmarks of the packed mGTE encoder (`make bench`, `python -m benchmarks.run`)."""
