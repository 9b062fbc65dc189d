"""Read ``template.yaml`` and resolve the parts the emulation needs.

CloudFormation's short tags (``!Ref``, ``!Sub``, ``!GetAtt``, ...) are loaded as their
long forms, and :class:`Resolver` evaluates ``Ref``, ``Fn::Sub``, ``Fn::GetAtt``,
``Fn::Join``, ``Fn::If`` / ``Fn::Equals`` / ``Fn::Not`` against parameter values and
the physical names and ARNs of the emulated resources. Anything it cannot resolve
is an error: the emulation never invents a value the template does not give.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from skysift.errors import ConfigError

__all__ = [
    "Resolver",
    "check_parameters",
    "load_template",
    "parameter_defaults",
    "resources_of_type",
]


class _CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: str | Path) -> dict[str, Any]:
    """The template as plain data, short tags expanded."""
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)


_SUB_VAR = re.compile(r"\$\{([^}!]+)\}")


class Resolver:
    """Evaluate intrinsic functions with known parameter and resource values."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, Any], pseudo: dict[str, str]) -> None:
        self.template = template
        self.parameters = parameters
        self.pseudo = pseudo
        self.refs: dict[str, Any] = {}
        self.attributes: dict[tuple[str, str], Any] = {}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template.get("Conditions", {})[name]))

    def _ref(self, name: str) -> Any:
        for table in (self.pseudo, self.parameters, self.refs):
            if name in table:
                return table[name]
        raise ConfigError(f"template.yaml: cannot resolve Ref {name!r} in the emulation")

    def _getatt(self, resource: str, attribute: str) -> Any:
        try:
            return self.attributes[(resource, attribute)]
        except KeyError:
            raise ConfigError(f"template.yaml: cannot resolve GetAtt {resource}.{attribute}") from None

    def _sub(self, text: str, variables: dict[str, Any] | None = None) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if variables and name in variables:
                return str(self.resolve(variables[name]))
            if "." in name:
                return str(self._getatt(*name.split(".", 1)))
            return str(self._ref(name))

        return _SUB_VAR.sub(one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, value), = node.items()
            if key == "Ref":
                return self._ref(value)
            if key == "Fn::GetAtt":
                return self._getatt(*value)
            if key == "Fn::Sub":
                if isinstance(value, list):
                    return self._sub(value[0], value[1])
                return self._sub(value)
            if key == "Fn::Join":
                return value[0].join(str(self.resolve(v)) for v in self.resolve(value[1]))
            if key == "Fn::Equals":
                left, right = self.resolve(value)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(value[0])
            if key == "Fn::If":
                name, yes, no = value
                return self.resolve(yes if self.condition(name) else no)
            if key == "Condition":
                return self.condition(value)
        return {k: self.resolve(v) for k, v in node.items()}


def parameter_defaults(template: dict[str, Any]) -> dict[str, Any]:
    """Each parameter's default (as a string, as CloudFormation passes it on)."""
    return {name: str(spec["Default"]) for name, spec in template.get("Parameters", {}).items() if "Default" in spec}


def resources_of_type(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {name: spec for name, spec in template["Resources"].items() if spec["Type"] == type_}


def check_parameters(template: dict[str, Any], values: dict[str, Any]) -> None:
    """Refuse parameter values CloudFormation would refuse for this template.

    A name the template does not declare (the message lists those it does), a
    ``Number`` that is not a number or lies outside ``MinValue``/``MaxValue``, a value
    outside ``AllowedValues`` or not matching ``AllowedPattern``: :class:`ConfigError`.
    """
    declared = template.get("Parameters", {})
    unknown = sorted(set(values) - set(declared))
    if unknown:
        raise ConfigError(f"template.yaml has no parameter {', '.join(unknown)}; "
                          f"its parameters are {', '.join(declared)}")
    for name, value in values.items():
        spec, text = declared[name], str(value)
        if spec.get("Type") == "Number":
            try:
                number = float(text)
            except ValueError:
                raise ConfigError(f"parameter {name} must be a number, got {text!r}") from None
            low, high = spec.get("MinValue"), spec.get("MaxValue")
            if (low is not None and number < float(low)) or (high is not None and number > float(high)):
                raise ConfigError(f"parameter {name} = {text} is outside [{low if low is not None else '-inf'}, "
                                  f"{high if high is not None else 'inf'}]")
        allowed = spec.get("AllowedValues")
        if allowed is not None and text not in [str(v) for v in allowed]:
            raise ConfigError(f"parameter {name} = {text!r} is not one of {', '.join(str(v) for v in allowed)}")
        pattern = spec.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, text):
            raise ConfigError(f"parameter {name} = {text!r} does not match {pattern}")
