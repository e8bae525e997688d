import sys

from nlpmodel_runtime.cli import main

sys.exit(main())
