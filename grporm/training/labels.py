"""Label conventions shared by the data sets, the objectives and the metrics."""

# A target no loss and no metric counts (VOC's object borders); torch's cross-entropy uses the same.
IGNORE_INDEX = -100
