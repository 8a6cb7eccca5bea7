"""Interactive views over SpikeRecords and single neurons.

Each view is a pure figure function (returns a ``plotly.graph_objects.Figure``; works headless, e.g.
under papermill) plus a thin ipywidgets class around a live FigureWidget (needs ``anywidget``).
"""

from widgets.grouping import (
    GroupColoring,
    dasbe_weight,
    group_image,
    grouping_figure,
    gust_weight,
    phase_colors,
    phase_hues,
    phase_image,
    phase_strip_figure,
    phase_weights,
)
from widgets.gust_inspect import NeuronInspector, binding_animation_figure, neuron_inspector_figure
from widgets.neuron_tuner import NeuronTuner, neuron_figure
from widgets.raster import SpikeRaster, raster_figure

__all__ = [
    "GroupColoring",
    "NeuronInspector",
    "NeuronTuner",
    "SpikeRaster",
    "binding_animation_figure",
    "dasbe_weight",
    "group_image",
    "grouping_figure",
    "gust_weight",
    "neuron_figure",
    "neuron_inspector_figure",
    "phase_colors",
    "phase_hues",
    "phase_image",
    "phase_strip_figure",
    "phase_weights",
    "raster_figure",
]
