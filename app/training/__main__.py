"""`python -m app.training`: the trainer service (what `clora trainer` runs)."""

from app.training.daemon import main

main()
