"""`detour inject`: a mutating admission webhook that adds the sidecar to labelled pods.

`settings` reads inject.yaml, `patch` decides what a pod gets (pure), `review` answers an
AdmissionReview (pure), `webhook` serves it over HTTPS with certificate reload.
"""
