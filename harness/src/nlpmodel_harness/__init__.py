"""The development harness of nlpmodel-operator: the local control plane and its build, the stand-ins
(model servers, KServe/kubelet controllers, prometheus-operator), the Prometheus launcher, the fault
proxy, offline schema checks and the demo.

It is its own distribution (``harness/``), installed by ``make deps`` from the checkout; the operator's
wheel never contains it and the operator never imports it.
"""
