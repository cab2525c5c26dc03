"""Recipes by name, with did-you-mean, and the one way to build a sampler from a name.

    recipe = get_recipe("tcd-sd15@realistic-vision")   # a recipe on one of recipes.BASES
    sampler = load_sampler(recipe, device="cuda", weights_root="weights")
"""
from __future__ import annotations

from pathlib import Path

from methods.common.errors import UserError, did_you_mean

from .recipe import SamplerRecipe
from .recipes import BASES, RECIPES


def get_recipe(name: str) -> SamplerRecipe:
    """A registered recipe; `NAME@BASE` puts it on a base of recipes.BASES (or any repository id)."""
    name, _, base = name.partition("@")
    if name not in RECIPES:
        raise UserError(f"unknown sampler recipe {name!r}{did_you_mean(name, RECIPES)} (python -m baselines list)")
    recipe = RECIPES[name]
    if base:
        if recipe.pipeline != "sd15":
            raise UserError(f"{name} runs on {recipe.base}; only SD-1.5 recipes take another base")
        recipe = recipe.on_base(BASES.get(base, base), label=base)
    return recipe


def load_sampler(recipe: SamplerRecipe | str, device: str = "cpu", weights_root: str | Path | None = None,
                 batch_size: int = 16):
    from .diffusers_sampler import DiffusersSampler

    recipe = get_recipe(recipe) if isinstance(recipe, str) else recipe
    return DiffusersSampler(recipe, device=device, weights_root=weights_root, batch_size=batch_size)
