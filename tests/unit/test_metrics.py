"""Metric names and values for Orthanc's Prometheus endpoint."""

from orthanc_plugin.metrics import ProcessingHistogram, metric_name, node_metrics, version_number


def test_names_are_prometheus_safe_and_versions_are_numbers():
    assert metric_name("ai_model_version", "thyroid-segmentation") == "ai_model_version_thyroid_segmentation"
    assert version_number("1.10.3") == 1_010_003


def test_histogram_is_cumulative():
    histogram = ProcessingHistogram()
    for seconds in (0.1, 0.4, 0.9, 30.0):
        histogram.observe("thyroid", seconds)
    values = histogram.values()
    assert values["ai_processing_seconds_thyroid_bucket_le_0_25"] == 1
    assert values["ai_processing_seconds_thyroid_bucket_le_0_5"] == 2
    assert values["ai_processing_seconds_thyroid_bucket_le_1_0"] == 3
    assert values["ai_processing_seconds_thyroid_bucket_le_10_0"] == 3
    assert values["ai_processing_seconds_thyroid_bucket_le_inf"] == 4
    assert values["ai_processing_seconds_thyroid_sum"] == 31.4


def test_node_metrics_cover_queue_states_and_models():
    values = node_metrics(3, {"done": 5}, {"thyroid-segmentation": "1.0.0"}, ProcessingHistogram())
    assert values["ai_queue_depth"] == 3 and values["ai_studies_done"] == 5 and values["ai_studies_failed"] == 0
    assert values["ai_model_version_thyroid_segmentation"] == 1_000_000
