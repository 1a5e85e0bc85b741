import sys

from paddle_mnist.serve.command import main

sys.exit(main())
