"""Samplers behind one interface (base.py): published few-step models as recipes (recipe.py,
recipes.py) run by one diffusers sampler (diffusers_sampler.py), and the small worlds' teacher
and trained TDM students (teacher.py, tdm_student.py)."""
from .recipe import SamplerRecipe, Weights
from .recipes import BASES, RECIPES
from .registry import get_recipe, load_sampler

__all__ = ["BASES", "RECIPES", "SamplerRecipe", "Weights", "get_recipe", "load_sampler"]
