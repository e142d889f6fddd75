from __future__ import annotations

from django.db import IntegrityError, transaction

from accounts.models import User
from config.errors import Refused
from curation.models import (
    DEFAULT_SUBCLASS_NAME,
    ClassKind,
    LabelClass,
    Source,
    SubClass,
    TaxonomyAction,
    TaxonomyEvent,
)


class TaxonomyError(Refused):
    """A change to the class tree that cannot be made; the message says why."""


def _clean_name(name: str, what: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise TaxonomyError(f"A {what} name cannot be empty.")
    if "/" in cleaned or "\\" in cleaned or cleaned in {".", ".."}:
        raise TaxonomyError(f"A {what} name cannot contain slashes or be '.' or '..'.")
    if len(cleaned) > 200:
        raise TaxonomyError(f"A {what} name is at most 200 characters.")
    return cleaned


@transaction.atomic
def class_create(
    *, name: str, actor: User | None, kind: str = ClassKind.NORMAL, description: str = ""
) -> LabelClass:
    """Create a class with its default sub-class."""
    name = _clean_name(name, "class")
    if LabelClass.objects.filter(name__iexact=name).exists():
        raise TaxonomyError(f"A class named {name!r} exists already.")
    label_class = LabelClass.objects.create(name=name, kind=kind, description=description)
    SubClass.objects.create(
        label_class=label_class, name=DEFAULT_SUBCLASS_NAME, source=Source.REAL, is_default=True
    )
    TaxonomyEvent.objects.create(
        action=TaxonomyAction.CREATE_CLASS, actor=actor, to_class=label_class
    )
    return label_class


@transaction.atomic
def class_update(
    *,
    label_class: LabelClass,
    actor: User | None,
    name: str | None = None,
    kind: str | None = None,
    description: str | None = None,
) -> LabelClass:
    if name is not None:
        name = _clean_name(name, "class")
        if name != label_class.name:
            if LabelClass.objects.filter(name__iexact=name).exclude(pk=label_class.pk).exists():
                raise TaxonomyError(f"A class named {name!r} exists already.")
            TaxonomyEvent.objects.create(
                action=TaxonomyAction.RENAME_CLASS,
                actor=actor,
                to_class=label_class,
                detail={"from": label_class.name, "to": name},
            )
            label_class.name = name
    if kind is not None:
        label_class.kind = kind
    if description is not None:
        label_class.description = description
    label_class.save()
    return label_class


@transaction.atomic
def class_delete(*, label_class: LabelClass, actor: User | None) -> None:
    """Delete a class that holds no images (trashed ones included)."""
    if SubClass.objects.filter(label_class=label_class, images__isnull=False).exists():
        raise TaxonomyError(
            f"Class {label_class.name!r} still has images; move its sub-classes to another "
            "class (a merge) first."
        )
    TaxonomyEvent.objects.create(
        action=TaxonomyAction.DELETE_CLASS, actor=actor, detail={"name": label_class.name}
    )
    SubClass.objects.filter(label_class=label_class).delete()
    label_class.delete()


@transaction.atomic
def subclass_create(
    *, label_class: LabelClass, name: str, source: str = Source.REAL, actor: User | None
) -> SubClass:
    name = _clean_name(name, "sub-class")
    if SubClass.objects.filter(label_class=label_class, name__iexact=name).exists():
        raise TaxonomyError(f"Class {label_class.name!r} already has a sub-class named {name!r}.")
    subclass = SubClass.objects.create(label_class=label_class, name=name, source=source)
    TaxonomyEvent.objects.create(
        action=TaxonomyAction.CREATE_SUBCLASS, actor=actor, subclass=subclass, to_class=label_class
    )
    return subclass


@transaction.atomic
def subclass_update(
    *, subclass: SubClass, actor: User | None, name: str | None = None, source: str | None = None
) -> SubClass:
    if name is not None:
        name = _clean_name(name, "sub-class")
        if name != subclass.name:
            clash = SubClass.objects.filter(label_class=subclass.label_class, name__iexact=name)
            if clash.exclude(pk=subclass.pk).exists():
                raise TaxonomyError(
                    f"Class {subclass.label_class.name!r} already has a sub-class named {name!r}."
                )
            TaxonomyEvent.objects.create(
                action=TaxonomyAction.RENAME_SUBCLASS,
                actor=actor,
                subclass=subclass,
                detail={"from": subclass.name, "to": name},
            )
            subclass.name = name
    if source is not None:
        subclass.source = source
    subclass.save()
    return subclass


@transaction.atomic
def subclass_move(*, subclass: SubClass, to_class: LabelClass, actor: User | None) -> SubClass:
    """Move a sub-class, with its images, under another class: a merge (or, moved out to a new
    class, a split). Images keep their sub-class, so no label event is needed; the move itself
    is recorded.

    A class's default sub-class arrives as an ordinary one, named after the class it left when
    its name would clash; the class it left gets a fresh, empty default.
    """
    subclass = (
        SubClass.objects.select_for_update().select_related("label_class").get(pk=subclass.pk)
    )
    from_class = subclass.label_class
    if from_class.pk == to_class.pk:
        raise TaxonomyError(f"Sub-class {subclass.name!r} is already in {to_class.name!r}.")
    new_name = subclass.name
    if SubClass.objects.filter(label_class=to_class, name__iexact=new_name).exists():
        new_name = from_class.name if subclass.is_default else f"{from_class.name} {subclass.name}"
        if SubClass.objects.filter(label_class=to_class, name__iexact=new_name).exists():
            raise TaxonomyError(
                f"Class {to_class.name!r} already has a sub-class named {new_name!r}; rename one "
                "first."
            )
    was_default = subclass.is_default
    subclass.label_class = to_class
    subclass.name = new_name
    subclass.is_default = False
    try:
        with transaction.atomic():
            subclass.save()
    except IntegrityError as exc:
        raise TaxonomyError(f"Could not move the sub-class: {exc}") from None
    if was_default:
        SubClass.objects.create(
            label_class=from_class, name=DEFAULT_SUBCLASS_NAME, source=Source.REAL, is_default=True
        )
    TaxonomyEvent.objects.create(
        action=TaxonomyAction.MOVE_SUBCLASS,
        actor=actor,
        subclass=subclass,
        from_class=from_class,
        to_class=to_class,
        detail={"name": new_name, "was_default": was_default},
    )
    return subclass


@transaction.atomic
def subclass_delete(*, subclass: SubClass, actor: User | None) -> None:
    if subclass.is_default:
        raise TaxonomyError("A class's default sub-class cannot be deleted.")
    if subclass.images.exists():
        raise TaxonomyError(
            f"Sub-class {subclass.name!r} still has images (trashed ones count); move them first."
        )
    TaxonomyEvent.objects.create(
        action=TaxonomyAction.DELETE_SUBCLASS,
        actor=actor,
        from_class=subclass.label_class,
        detail={"name": subclass.name},
    )
    subclass.delete()


def subclass_resolve(
    *, class_name: str, subclass_name: str | None, source: str, actor: User | None
) -> SubClass:
    """The sub-class an import path names, created when missing.

    ``<class>`` alone means the class's default sub-class for real images, or a sub-class named
    after the source ("staged", "synthetic") otherwise.
    """
    class_name = _clean_name(class_name, "class")
    label_class = LabelClass.objects.filter(name__iexact=class_name).first()
    if label_class is None:
        try:
            label_class = class_create(name=class_name, actor=actor)
        except TaxonomyError:
            # Created by a concurrent import in the meantime.
            label_class = LabelClass.objects.get(name__iexact=class_name)
    if subclass_name is None and source == Source.REAL:
        return SubClass.objects.get(label_class=label_class, is_default=True)
    name = _clean_name(subclass_name or source, "sub-class")
    existing = SubClass.objects.filter(label_class=label_class, name__iexact=name).first()
    if existing is not None:
        return existing
    try:
        return subclass_create(label_class=label_class, name=name, source=source, actor=actor)
    except TaxonomyError:
        return SubClass.objects.get(label_class=label_class, name__iexact=name)
