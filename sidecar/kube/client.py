"""The official `kubernetes` client, authenticated the way a pod expects: the service account when
running in a cluster, else the kubeconfig (`KUBECONFIG`, or ~/.kube/config). Imported only in
ConfigMap mode, so file mode pays nothing for it."""

from __future__ import annotations

from typing import Any


def core_v1_api(kubeconfig: str | None = None) -> Any:
    from kubernetes import client, config

    configuration = client.Configuration()
    if kubeconfig is None:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    else:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.CoreV1Api(client.ApiClient(configuration))
