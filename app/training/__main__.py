"""`python -m app.training`: the trainer service (what `clora trainer` runs)."""

from app.training.service import main

main()
