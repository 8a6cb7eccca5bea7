"""Neuron and synapse dynamics: frozen Params, State NamedTuples, pure steps and thin nn.Module wrappers.

* ``surrogate``: Heaviside spike functions with surrogate gradients (rectangle, gaussian, fast_sigmoid, arctan).
* ``stochastic``: memoryless stochastic pixel neuron with absolute refractoriness (DASBE, GUST).
* ``lif``: leaky integrate-and-fire neuron with an optional current synapse.
* ``iir``: SNN-IIR dual-exponential / low-pass PSP filters and the decaying-reset neuron.
* ``pcnn``: pulse-coupled neural network (DASBE's pure-SNN baseline).
* ``explore``: single-neuron registry for the NeuronTuner widget.
"""

from workbench.neurons.explore import (
    INPUT_KINDS,
    NEURON_MODELS,
    NeuronModelSpec,
    NeuronTrace,
    ParamSpec,
    make_input,
    simulate_neuron,
)
from workbench.neurons.iir import (
    DualExpIIR,
    DualExpIIRParams,
    DualExpTwoState,
    IIRCoefficients,
    IIRNeuron,
    IIRNeuronParams,
    IIRNeuronState,
    IIRState,
    LowPass,
    LowPassParams,
    LowPassState,
    TwoStateCoefficients,
    TwoStateParams,
    TwoStateState,
    causal_conv,
    dual_exp_constants,
    dual_exp_iir_impulse,
    dual_exp_iir_run,
    dual_exp_iir_step,
    iir_neuron_run,
    iir_neuron_step,
    iir_pole_moduli,
    low_pass_impulse,
    low_pass_run,
    low_pass_step,
    two_state_impulse,
    two_state_run,
    two_state_step,
)
from workbench.neurons.lif import LIF, LIFParams, LIFState, lif_initial_state, lif_step
from workbench.neurons.pcnn import (
    PCNN,
    PCNNParams,
    PCNNState,
    coupling_kernel,
    dense_coupling,
    linking_input,
    pcnn_initial_state,
    pcnn_step,
)
from workbench.neurons.stochastic import (
    StochasticNeuron,
    StochasticParams,
    StochasticState,
    draw_noise,
    spike_probability,
    stochastic_step,
)
from workbench.neurons.surrogate import SURROGATES, SpikeFunction, resolve_spike_fn, surrogate

__all__ = [
    # surrogate
    "SURROGATES", "SpikeFunction", "resolve_spike_fn", "surrogate",
    # stochastic
    "StochasticNeuron", "StochasticParams", "StochasticState", "draw_noise", "spike_probability",
    "stochastic_step",
    # lif
    "LIF", "LIFParams", "LIFState", "lif_initial_state", "lif_step",
    # iir
    "DualExpIIR", "DualExpIIRParams", "DualExpTwoState", "IIRCoefficients", "IIRNeuron", "IIRNeuronParams",
    "IIRNeuronState", "IIRState", "LowPass", "LowPassParams", "LowPassState", "TwoStateCoefficients",
    "TwoStateParams", "TwoStateState", "causal_conv", "dual_exp_constants", "dual_exp_iir_impulse",
    "dual_exp_iir_run", "dual_exp_iir_step", "iir_neuron_run", "iir_neuron_step", "iir_pole_moduli",
    "low_pass_impulse", "low_pass_run", "low_pass_step", "two_state_impulse", "two_state_run", "two_state_step",
    # pcnn
    "PCNN", "PCNNParams", "PCNNState", "coupling_kernel", "dense_coupling", "linking_input",
    "pcnn_initial_state", "pcnn_step",
    # explore
    "INPUT_KINDS", "NEURON_MODELS", "NeuronModelSpec", "NeuronTrace", "ParamSpec", "make_input",
    "simulate_neuron",
]
