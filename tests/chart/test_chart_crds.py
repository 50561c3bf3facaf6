"""templates/crds: the SpiralJob CRD from files/crds, installable or skipped, kept on uninstall."""

from __future__ import annotations

import helm_python as helm
import yaml

import chartkit


def test_renders_the_spiraljob_crd_by_default(chart_dir, default_release: chartkit.Rendered) -> None:
    crd = default_release.one("CustomResourceDefinition")
    source = yaml.safe_load((chart_dir / chartkit.CRD_FILE).read_text())
    assert crd["metadata"]["name"] == "spiraljobs.spiral.dev"
    assert crd["spec"] == source["spec"]  # the generated schema passes through untouched
    assert crd["spec"]["group"] == "spiral.dev"
    assert crd["spec"]["names"]["kind"] == "SpiralJob" and crd["spec"]["names"]["plural"] == "spiraljobs"
    assert "v1alpha1" in [v["name"] for v in crd["spec"]["versions"]]


def test_crd_is_kept_on_uninstall_and_labelled(default_release: chartkit.Rendered) -> None:
    crd = default_release.one("CustomResourceDefinition")
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert crd["metadata"]["labels"]["app.kubernetes.io/instance"] == chartkit.RELEASE


def test_crd_keep_annotation_can_be_dropped(chart: helm.Chart) -> None:
    crd = chartkit.render(chart, {"crds": {"keep": False}}).one("CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})


def test_skips_the_crd_when_crds_install_is_false(rendered_sets: dict[str, chartkit.Rendered]) -> None:
    assert "CustomResourceDefinition" not in rendered_sets["namespaced"].kinds()
    assert "crds.install=false" in rendered_sets["namespaced"].notes
