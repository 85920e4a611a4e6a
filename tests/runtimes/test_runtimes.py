"""Each runtime loads its artifact, infers and unloads, without a server."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import numpy as np
import pytest

from openmaas.domain.errors import BadRequest
from openmaas.runtimes import ArtifactSpec, available_runtimes, runtime_for_filename
from openmaas.runtimes.onnx import OnnxRuntime
from openmaas.runtimes.pyclass import PythonClassRuntime
from openmaas.runtimes.sklearn import SklearnRuntime
from tests.models import classifier, onnx_file, python_file, regressor, skops_file


def _infer(runtime, inputs, outputs=None):
    async def run():
        await runtime.load()
        assert runtime.ready
        try:
            return await runtime.infer(inputs, outputs)
        finally:
            await runtime.unload()
            assert not runtime.ready

    return asyncio.run(run())


def test_sklearn_classifier_matches_the_estimator(tmp_path: Path) -> None:
    model = classifier()
    rows = np.random.default_rng(1).normal(size=(5, 3))
    runtime = SklearnRuntime(ArtifactSpec(path=skops_file(tmp_path, model)))
    result = _infer(runtime, {"input": rows})
    np.testing.assert_array_equal(result["predict"], model.predict(rows))
    np.testing.assert_allclose(result["predict_proba"], model.predict_proba(rows))


def test_sklearn_predict_from_one_call_matches_the_estimator_even_on_ties(
    tmp_path: Path,
) -> None:
    from sklearn.ensemble import RandomForestClassifier

    model = classifier()
    model.coef_, model.intercept_ = np.array([[1.0, 0.0, 0.0]]), np.array([0.0])
    # A decision of 1e-17 is class 1, yet both probabilities round to exactly 0.5.
    rows = np.array([[1e-17, 0.0, 0.0], [0.0, 0.0, 0.0], [-1e-17, 0.0, 0.0], [2.0, 0.0, 0.0]])
    runtime = SklearnRuntime(ArtifactSpec(path=skops_file(tmp_path, model)))
    result = _infer(runtime, {"input": rows})
    assert list(result) == ["predict", "predict_proba"]
    np.testing.assert_array_equal(result["predict"], model.predict(rows))
    np.testing.assert_array_equal(result["predict_proba"], model.predict_proba(rows))

    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3))
    labels = np.array(["low", "mid", "high"])[np.digitize(x[:, 0], [-0.5, 0.5])]
    forest = RandomForestClassifier(n_estimators=4, random_state=0).fit(x, labels)
    forest_file = skops_file(tmp_path, forest, "forest.skops")
    runtime = SklearnRuntime(ArtifactSpec(path=forest_file, allow_code=True))  # trees: untrusted
    rows = rng.normal(size=(200, 3))
    result = _infer(runtime, {"input": rows}, ["predict_proba", "predict"])
    assert list(result) == ["predict_proba", "predict"]
    np.testing.assert_array_equal(result["predict"], forest.predict(rows))
    np.testing.assert_array_equal(result["predict_proba"], forest.predict_proba(rows))


def test_sklearn_large_batches_and_output_selection(tmp_path: Path) -> None:
    model = regressor()
    rows = np.random.default_rng(2).normal(size=(1000, 2))
    runtime = SklearnRuntime(ArtifactSpec(path=skops_file(tmp_path, model)))
    result = _infer(runtime, {"input": rows}, ["predict"])
    np.testing.assert_allclose(result["predict"], model.predict(rows))
    with pytest.raises(BadRequest):
        _infer(
            SklearnRuntime(ArtifactSpec(path=skops_file(tmp_path, model))), {"input": rows}, ["x"]
        )


def test_sklearn_pickle_needs_permission(tmp_path: Path) -> None:
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps(regressor()))
    with pytest.raises(BadRequest) as error:
        SklearnRuntime.inspect(ArtifactSpec(path=path))
    assert error.value.code == "code_not_allowed"
    signature = SklearnRuntime.inspect(ArtifactSpec(path=path, allow_code=True))
    assert signature.inputs[0].shape == (-1, 2)


def test_skops_with_untrusted_types_needs_permission(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    model = FunctionTransformer(func=np.log1p).fit(np.ones((3, 2)))
    path = tmp_path / "untrusted.skops"
    sio.dump(model, path)
    with pytest.raises(BadRequest) as error:
        SklearnRuntime.inspect(ArtifactSpec(path=path))
    assert error.value.code in ("untrusted_types", "invalid_artifact")


def test_a_reloaded_skops_file_is_scanned_once_and_a_changed_one_again(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.ensemble import RandomForestClassifier

    from openmaas.runtimes.sklearn import _untrusted_types

    path = skops_file(tmp_path, regressor(), "model.skops")
    for _ in range(3):  # loaded, evicted, loaded again: one scan
        runtime = SklearnRuntime(ArtifactSpec(path=path))
        asyncio.run(runtime.load())
    info = _untrusted_types.cache_info()
    assert info.hits >= 2
    # The same path with other contents is scanned again, and refused without permission.
    x = np.random.default_rng(4).normal(size=(20, 2))
    sio.dump(RandomForestClassifier(n_estimators=2).fit(x, x[:, 0] > 0), path)  # trees
    with pytest.raises(BadRequest) as error:
        asyncio.run(SklearnRuntime(ArtifactSpec(path=path)).load())
    assert error.value.code == "untrusted_types"


def test_onnx_runtime(tmp_path: Path) -> None:
    model = classifier(features=4)
    rows = np.random.default_rng(3).normal(size=(6, 4)).astype(np.float32)
    runtime = OnnxRuntime(ArtifactSpec(path=onnx_file(tmp_path, model, 4)))
    result = _infer(runtime, {"X": rows})
    label = next(name for name in result if "label" in name)
    np.testing.assert_array_equal(result[label], model.predict(rows))


def test_onnx_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "x.onnx"
    path.write_bytes(b"not onnx")
    with pytest.raises(BadRequest):
        OnnxRuntime.inspect(ArtifactSpec(path=path))


def test_python_class_runtime(tmp_path: Path) -> None:
    spec = ArtifactSpec(path=python_file(tmp_path), allow_code=True)
    assert PythonClassRuntime.inspect(spec).outputs[0].name == "doubled"
    result = _infer(PythonClassRuntime(spec), {"x": np.array([[1.0], [2.5]])})
    np.testing.assert_allclose(result["doubled"], [2.0, 5.0])
    with pytest.raises(BadRequest):
        PythonClassRuntime.inspect(ArtifactSpec(path=python_file(tmp_path)))


def test_python_module_that_raises_on_import(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "broken.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(BadRequest) as error:
        PythonClassRuntime.inspect(ArtifactSpec(path=path, allow_code=True))
    # What the module raised is for the server's log, not for the client.
    assert "importing the module failed" in error.value.message
    assert "boom" not in error.value.message
    assert any("boom" in record.getMessage() for record in caplog.records)


def test_catalog_knows_built_ins_and_suffixes() -> None:
    assert {"sklearn", "onnx", "python"} <= set(available_runtimes())
    assert runtime_for_filename("a.SKOPS") is SklearnRuntime
    assert runtime_for_filename("a.onnx") is OnnxRuntime
    with pytest.raises(BadRequest):
        runtime_for_filename("a.bin")
