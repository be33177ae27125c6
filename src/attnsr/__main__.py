"""``python -m attnsr`` (also what ``torchrun -m attnsr train`` runs)."""

from attnsr.cli import main

if __name__ == "__main__":
    main()
