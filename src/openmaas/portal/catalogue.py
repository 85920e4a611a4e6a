"""The model catalogue a visitor may call: deployed models and routes their plans allow,
each with its inputs and outputs and ready-to-paste code samples."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from openmaas.domain.accounts import Principal
from openmaas.domain.applications import ApplicationStatus
from openmaas.platform import Platform
from openmaas.runtimes.language import ChatRuntime, EmbeddingRuntime
from openmaas.serving.endpoints import Endpoint


@dataclass
class Entry:
    name: str
    kind: str  # "chat", "embeddings", "tensor" or "route"
    description: str = ""
    versions: list[int] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def samples(self, base: str) -> dict[str, str]:
        base = base.rstrip("/")
        if self.kind == "chat":
            return _chat_samples(base, self.name)
        if self.kind == "embeddings":
            return _embedding_samples(base, self.name)
        return _tensor_samples(base, self.name, self.inputs)


async def entries(platform: Platform, who: Principal) -> list[Entry]:
    allowed = await allowed_models(platform, who)
    found: dict[str, Entry] = {}
    for endpoint in platform.serving.table.by_name.values():
        name = endpoint.deployment.model_name
        if not allowed(name):
            continue
        entry = found.get(name) or found.setdefault(name, _entry(endpoint))
        if endpoint.deployment.version not in entry.versions:
            entry.versions.append(endpoint.deployment.version)
        entry.endpoints.append(endpoint.name)
    # Routes of the default namespace: a model name alone reaches them.
    for name, route in platform.routing.table.default.items():
        if allowed(name):
            targets = ", ".join(route.spec.destinations)
            found[name] = Entry(name, "route", f"A route to {targets}")
    return sorted(found.values(), key=lambda entry: entry.name)


async def allowed_models(platform: Platform, who: Principal) -> Any:
    """Which model names ``who`` may call: all for an admin, else what their active
    applications' plans allow."""
    if who.is_admin:
        return lambda name: True
    plans = {
        app.plan
        for app in await platform.applications.list(who)
        if app.status is ApplicationStatus.ACTIVE
    }
    resolved = [await platform.plans.get(name) for name in plans]
    return lambda name: any(plan.allows(name) for plan in resolved)


def _entry(endpoint: Endpoint) -> Entry:
    runtime = endpoint.runtime_class
    kind = (
        "chat"
        if issubclass(runtime, ChatRuntime)
        else "embeddings"
        if issubclass(runtime, EmbeddingRuntime)
        else "tensor"
    )
    signature = endpoint.version.signature
    return Entry(
        endpoint.deployment.model_name,
        kind,
        endpoint.version.description,
        inputs=[spec.to_dict() for spec in signature.inputs],
        outputs=[spec.to_dict() for spec in signature.outputs],
    )


def _example_row(inputs: list[dict[str, Any]]) -> list[float]:
    shape = inputs[0]["shape"] if inputs else [-1, 3]
    width = shape[-1] if len(shape) > 1 and isinstance(shape[-1], int) and shape[-1] > 0 else 3
    return [round(0.1 * (i + 1), 1) for i in range(min(width, 8))]


def _tensor_samples(base: str, name: str, inputs: list[dict[str, Any]]) -> dict[str, str]:
    row = _example_row(inputs)
    first = inputs[0] if inputs else {"name": "input", "datatype": "FP64"}
    v2 = {
        "inputs": [
            {
                "name": first["name"],
                "shape": [1, len(row)],
                "datatype": first["datatype"],
                "data": row,
            }
        ]
    }
    body = json.dumps({"model_name": name, "input": row})
    return {
        "curl": (
            f"curl -X POST {base}/predict \\\n  -H 'Authorization: Bearer $OPENMAAS_KEY' \\\n"
            f"  -H 'Content-Type: application/json' \\\n  -d '{body}'"
        ),
        "Python": (
            "import os, httpx\n\n"
            f'answer = httpx.post("{base}/predict",\n'
            '    headers={"Authorization": f"Bearer {os.environ[\'OPENMAAS_KEY\']}"},\n'
            f'    json={{"model_name": "{name}", "input": {row}}})\n'
            'print(answer.json()["prediction"])'
        ),
        "Open Inference Protocol (V2)": (
            f"POST {base}/v2/models/{name}/infer\n\n{json.dumps(v2, indent=2)}"
        ),
    }


def _chat_samples(base: str, name: str) -> dict[str, str]:
    return {
        "openai SDK": (
            "import os\nfrom openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{base}/v1", api_key=os.environ["OPENMAAS_KEY"])\n'
            "answer = client.chat.completions.create(\n"
            f'    model="{name}",\n'
            '    messages=[{"role": "user", "content": "Hello!"}],\n)\n'
            "print(answer.choices[0].message.content)"
        ),
        "curl": (
            f"curl {base}/v1/chat/completions \\\n  -H 'Authorization: Bearer $OPENMAAS_KEY' \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            f'  -d \'{{"model": "{name}", "messages": [{{"role": "user", "content": "Hello!"}}]}}\''
        ),
    }


def _embedding_samples(base: str, name: str) -> dict[str, str]:
    return {
        "openai SDK": (
            "import os\nfrom openai import OpenAI\n\n"
            f'client = OpenAI(base_url="{base}/v1", api_key=os.environ["OPENMAAS_KEY"])\n'
            f'vectors = client.embeddings.create(model="{name}", input=["a sentence"])\n'
            "print(len(vectors.data[0].embedding))"
        ),
        "curl": (
            f"curl {base}/v1/embeddings \\\n  -H 'Authorization: Bearer $OPENMAAS_KEY' \\\n"
            "  -H 'Content-Type: application/json' \\\n"
            f'  -d \'{{"model": "{name}", "input": ["a sentence"]}}\''
        ),
    }
