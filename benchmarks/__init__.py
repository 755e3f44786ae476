"""Side-by-side benchmarks of lamina against a plain PyTorch loop (and fastai / Lightning when installed).

Run `python -m benchmarks.run --suite all --quick` from the repository root; see benchmarks/README.md.
"""
