"""paddle_mnist: the PaddlePaddle handwritten-digit tutorial as installable software.

Importing the package changes nothing in the process: no warning filters, no matplotlib backend,
no environment.  Paddle itself is imported (once, with ``MKL_DEBUG_CPU_TYPE`` set) in
``paddle_mnist._paddle``, by the modules that need it.
"""

__version__ = "0.1.0"
