"""The generative fuzz tier: trustpool's four fail-closed invariants
(no trust without proof, nothing escapes, bounded time, no secret in any
output) checked through the real entry points on answers that hypothesis
makes up and a real TLS server plays byte by byte."""
