"""scikit-learn estimator habits without depending on scikit-learn.

The constructor stores its arguments unchanged as attributes of the same names; these are the
parameters. ``get_params(deep=True)`` returns them (nested estimators expand as
``name__sub``), ``set_params(**params)`` sets them (unknown names are an error) and returns the
estimator, so ``sklearn.base.clone(model)`` gives an unfitted copy with equal settings.
"""

import inspect


class ParamsMixin:
    """get_params / set_params / repr from the ``__init__`` signature."""

    @classmethod
    def _get_param_names(cls):
        init = cls.__init__
        if init is object.__init__:
            return []
        params = [p for p in inspect.signature(init).parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        return sorted(p.name for p in params)

    def _store_params(self, values):
        """Store the constructor arguments in ``values`` (``locals()`` of ``__init__``)
        unchanged, as attributes of the same names."""
        for name in self._get_param_names():
            setattr(self, name, values[name])

    def get_params(self, deep=True):
        """Constructor settings as a dict (scikit-learn habit)."""
        out = {}
        for name in self._get_param_names():
            value = getattr(self, name)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update({f"{name}__{k}": v for k, v in value.get_params().items()})
            out[name] = value
        return out

    def set_params(self, **params):
        """Set constructor settings; returns self. Unknown names raise ValueError."""
        valid = self._get_param_names()
        nested = {}
        for key, value in params.items():
            name, _, sub = key.partition("__")
            if name not in valid:
                raise ValueError(f"invalid parameter {name!r} for {type(self).__name__}; "
                                 f"valid parameters: {', '.join(valid)}")
            if sub:
                nested.setdefault(name, {})[sub] = value
            else:
                setattr(self, name, value)
        for name, sub_params in nested.items():
            getattr(self, name).set_params(**sub_params)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in
                    inspect.signature(type(self).__init__).parameters.values()}
        shown = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            if name in defaults and _same(defaults[name], value):
                continue
            shown.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


def _same(a, b):
    try:
        return bool(a == b)
    except Exception:  # arrays and other objects without a plain ==
        return a is b
