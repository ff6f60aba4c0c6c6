"""The SDK, loaded lazily and with its debug logging pinned off."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from kms_appliance.backends.akeyless import client, sdk
from tests.support.procs import REPO


def _fresh_python(code: str) -> str:
    """What ``code`` prints after loading the SDK lazily in a new interpreter (a clean sys.modules)."""
    prelude = "import sys; from kms_appliance.backends.akeyless import sdk; s = sdk.load();"
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True,
                          check=True, cwd=REPO).stdout


class TestLazySdk:
    """The lazy loader finds every model and matches the generated V2Api calls."""

    def test_every_model_module_name_is_derived_correctly(self):
        spec = importlib.util.find_spec("akeyless")
        assert spec is not None and spec.submodule_search_locations
        models = (Path(spec.submodule_search_locations[0]) / "models" / "__init__.py").read_text()
        pairs = re.findall(r"^from akeyless\.models\.(\w+) import (\w+)$", models, re.M)
        assert len(pairs) > 1000
        assert [c for m, c in pairs if sdk.model_module(c) != m] == []

    def test_load_does_not_run_the_package_init(self):
        out = _fresh_python("s.models.Item; n = sum(m.startswith('akeyless.models.') for m in sys.modules);"
                            "print(n, 'V2Api' in vars(sys.modules['akeyless']))").split()
        assert int(out[0]) < 20 and out[1] == "False"

    def test_other_code_reaching_for_akeyless_attributes_still_works(self):
        out = _fresh_python("import akeyless; print(akeyless.ApiClient is s.ApiClient,"
                            " akeyless.V2Api.__name__, akeyless.models.Item.__name__)").split()
        assert out == ["True", "V2Api", "Item"]

    def test_unknown_model_deserialises_as_raw_json(self):
        out = _fresh_python("import akeyless.api_client as ac; c = ac.ApiClient(s.Configuration());"
                            "print(c._ApiClient__deserialize({'a': 1}, 'NotAModelAnywhere'))")
        assert out.strip() == "{'a': 1}"

    def test_operations_match_the_generated_v2api(self):
        """Call each real V2Api method with a recording api_client; compare path and types."""
        import akeyless.api.v2_api as v2

        seen: dict[str, str] = {}

        class Recorder:
            client_side_validation = False

            def select_header_accept(self, accepts):
                return accepts[0]

            def select_header_content_type(self, types_):
                return types_[0]

            def call_api(self, path, method, *args, **kwargs):
                assert method == "POST"
                seen[path.lstrip("/")] = kwargs["response_type"]

        api = v2.V2Api(Recorder())
        for op in client.OPERATIONS:
            getattr(api, op.replace("-", "_"))(object())
        assert seen == {op: resp for op, (_, resp) in client.OPERATIONS.items()}


class TestSdkLogging:
    """The SDK's debug logs (whole bodies: DEKs, tokens) stay off even if re-enabled."""

    def test_debug_records_dropped_after_level_lowered(self, caplog):
        import logging

        sdk.load()
        rest = logging.getLogger("akeyless.rest")
        rest.setLevel(logging.DEBUG)
        with caplog.at_level(logging.DEBUG):
            rest.debug("response body: %s", "t-SECRET")
            rest.warning("kept")
        assert "t-SECRET" not in caplog.text and "kept" in caplog.text
        sdk.quiet_sdk_logging()
