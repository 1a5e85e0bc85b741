import sys

from paddle_mnist.cli import main

sys.exit(main())
