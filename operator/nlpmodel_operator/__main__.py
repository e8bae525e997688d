"""`python -m nlpmodel_operator`: run the operator."""

from nlpmodel_operator.controller.run import main

raise SystemExit(main())
