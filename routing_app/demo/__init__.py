"""The demo: local stack, two workers, Zipf traffic with a tenant that turns hot, a live view."""
