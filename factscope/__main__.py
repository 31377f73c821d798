"""``python -m factscope`` (and ``torchrun -m factscope``): the command line.

Usage::

    python -m factscope predict "The capital of France is" --k 5
    torchrun --standalone --nproc-per-node 2 -m factscope evaluate --editor rome --out runs/rome
"""

from factscope.cli import main

if __name__ == "__main__":
    main()
