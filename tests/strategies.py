"""Hypothesis strategies shared by the decoder fuzz tests (unit and against a real server)."""

from __future__ import annotations

from hypothesis import strategies as st

# Any JSON value, numbers past 64 bits included.
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
# The field names of Partita's messages: objects with these names and values of any type are the wrong-types
# and missing-fields cases.
FIELDS = st.sampled_from(
    ["kind", "workflowId", "workflowInstanceId", "taskId", "status", "name", "input", "outputData", "pollCount",
     "taskType", "startTime", "callbackAfterSeconds", "version", "priority", "generation", "taskRefName",
     "purpose"]
)  # fmt: skip
