"""Export downloads on the dataset version page (reviewers): a file of an export, or a folder
tree as one streamed tar. The same responses as the API's, for a signed-in browser."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_safe

from accounts.decorators import request_user
from curation.models import DatasetVersion
from curation.selectors_exports import ExportDownloads, ExportUnavailable, dataset_export_get
from curation.serving_exports import export_archive_response, export_file_response


def _export(request: HttpRequest, pk: int, export_id: int) -> ExportDownloads:
    # As ``reviewer_required``, for views that answer with a file rather than a page.
    if not request_user(request).is_reviewer:
        raise PermissionDenied("This needs the reviewer role.")
    version = get_object_or_404(DatasetVersion, pk=pk)
    try:
        return dataset_export_get(version=version, export_id=export_id)
    except ExportUnavailable as exc:
        raise Http404(str(exc)) from None


@login_required
@require_safe
def export_file(request: HttpRequest, pk: int, export_id: int, name: str) -> HttpResponseBase:
    export = _export(request, pk, export_id)
    try:
        return export_file_response(request, export=export, name=name)
    except ExportUnavailable as exc:
        raise Http404(str(exc)) from None


@login_required
@require_safe
def export_archive(request: HttpRequest, pk: int, export_id: int) -> HttpResponseBase:
    export = _export(request, pk, export_id)
    if not export.has_archive:
        raise Http404("A WebDataset export is made of shards; download them one by one.")
    return export_archive_response(export)
