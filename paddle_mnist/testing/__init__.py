"""What the test suite and the benchmarks in ``scripts/`` share, so neither reaches into the other:

    data_files.py      small data sets in the tutorial's JSON and in IDX, random or learnable
    drawn_digits.py    digits drawn as a person would on the pad: strokes and pictures, several styles
    hostile.py         running a command under an address-space limit, measuring its time and peak memory
    served.py          a server under test on loopback, attacked beside a bystander
    serve_attacks.py   the attacks of the hostile-serving tests and benchmark
    onnx_attacks.py    crafted ONNX exports planted in a run directory with a matching record

Nothing here runs at import; none of it is needed to train or predict.
"""
