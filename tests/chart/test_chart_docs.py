"""Chart documentation: every value has a helm-docs `# --` comment, and the generated files are current."""

from __future__ import annotations

import helm_python as helm
import yaml

import chartkit
import regenerate

VALUES_YAML = (chartkit.CHART_DIR / "values.yaml").read_text()


def test_every_value_has_a_helm_docs_comment() -> None:
    documented = {d.key for d in chartkit.values_docs(VALUES_YAML)}
    missing = [k for k in chartkit.leaf_keys(yaml.safe_load(VALUES_YAML)) if not any(k == d or k.startswith(d + ".") for d in documented)]
    assert not missing, f"values without a `# --` comment: {missing}"


def test_every_documented_value_is_in_the_schema() -> None:
    import json

    schema = json.loads((chartkit.CHART_DIR / "values.schema.json").read_text())
    for doc in chartkit.values_docs(VALUES_YAML):
        node = schema
        for part in doc.key.split("."):
            assert part in node.get("properties", {}), f"{doc.key} is not in values.schema.json"
            node = node["properties"][part]


def test_values_docs_parses_multiline_comments() -> None:
    docs = chartkit.values_docs("a:\n  # -- first line\n  # second line\n  b: 1\n# -- top\nc: [x]\n")
    assert docs == [chartkit.ValueDoc("a.b", "int", "1", "first line second line"), chartkit.ValueDoc("c", "list", '["x"]', "top")]


def test_readme_values_table_is_current() -> None:
    current = chartkit.README.read_text()
    assert regenerate.readme_text(current, VALUES_YAML) == current, "run: python tests/chart/regenerate.py"


def test_rules_file_is_current(chart: helm.Chart) -> None:
    assert regenerate.rules_text(chart) == chartkit.RULES_FILE.read_text(), "run: python tests/chart/regenerate.py"
