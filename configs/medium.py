"""DPA-2 "medium": "small" with 6 repformer layers and g2 attention (input_torch_medium.json)."""

from configs import small


def get_config():
    config = small.get_config()
    config.model["descriptor"]["repformer"].update(nlayers=6, update_g2_has_attn=True)
    return config
