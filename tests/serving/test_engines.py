"""The ``engine`` of a deployment, as checked on a server without a Ray cluster.

Deployments on a real Ray cluster are the ``ray`` group's (tests/ray/).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Platform
from tests.models import classifier
from tests.serving.helpers import deploy, register_estimator


@pytest.mark.parametrize(
    "placement",
    [
        {"engine": "ray", "num_replicas": 0},
        {"engine": "ray", "num_replicas": 2, "autoscaling": {"max_replicas": 2}},
        {"engine": "ray", "autoscaling": {"min_replicas": 3, "max_replicas": 2}},
        {"engine": "ray", "autoscaling": {"max_replicas": "many"}},
        {"engine": "ray", "autoscaling": {"target_ongoing_requests": 0}},
        {"engine": "ray", "ray_actor_options": {"runtime_env": {}}},
        {"engine": "ray", "ray_actor_options": {"num_cpus": -1}},
        {"engine": "local", "num_replicas": 2},
        {"engine": "spark"},
    ],
)
def test_wrong_placements_are_refused(
    platform: Platform, classifiers: list[str], placement: dict[str, object]
) -> None:
    response = platform.admin.post(
        "/deployments/deploy", json={"model_name": classifiers[0], **placement}
    )
    assert response.status_code in (400, 422), response.text
    assert response.json()["code"] in ("invalid_config", "invalid_request")


def test_ray_without_a_cluster_is_refused_and_local_stays_the_default(
    platform: Platform, unique_name: str, tmp_path: Path
) -> None:
    register_estimator(platform.admin, unique_name, classifier(), tmp_path)
    refused = platform.admin.post(
        "/deployments/deploy",
        json={"model_name": unique_name, "engine": "ray", "num_replicas": 2},
    )
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "engine_unavailable"
    assert "OPENMAAS_RAY_ADDRESS" in refused.json()["message"]
    assert platform.admin.get(f"/deployments/{unique_name}-v1").status_code == 404

    deployed = deploy(platform.admin, unique_name)
    assert deployed["config"]["engine"] == "local" and "ray" not in deployed
    described = platform.admin.get(f"/deployments/{deployed['endpoint_name']}").json()
    assert described["config"]["engine"] == "local" and "ray" not in described
