import sys

from paddle_mnist.data.command import main

sys.exit(main())
