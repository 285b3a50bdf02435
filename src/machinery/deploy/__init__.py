"""GitOps deploys: pin the inference image in a k8s overlay by digest, commit, push
(``mlops deploy bump``), and promote staging to prod (``mlops deploy promote``)."""
