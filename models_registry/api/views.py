"""One concern: the API's views, each a thin adapter from a request to one service.

The API's views: parse input, call the admin's services, report the result.

Reads are paged (cursor over ids) and filtered by declared query parameters; writes run
through ``idempotency.run_once``. No view writes a state itself.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, ClassVar

from django.db.models import Count, Max, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, parsers, renderers, status, viewsets
from rest_framework.decorators import action, api_view, permission_classes
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from models_registry import exports, roles
from models_registry.api import serializers as s
from models_registry.api.idempotency import idempotency_key, run_once
from models_registry.api.pagination import NamePagination
from models_registry.api.permissions import (
    HasApiToken,
    HoldsRolePermission,
    record_api_refusal,
    role_holding,
)
from models_registry.api.problems import (
    PROBLEM_TYPES,
    ApprovalRefused,
    LifecycleConflict,
    problem_response,
)
from models_registry.models import (
    ApiToken,
    AuditEvent,
    Deployment,
    DeploymentTarget,
    Environment,
    ModelVersion,
    PaperTradingRun,
    ValidationRun,
)
from models_registry.services import deployments, runs
from models_registry.services.audit import verify_audit_chain
from models_registry.services.registration import model_version_register_upload

MAX_ID_DIGITS = 18
APPROVAL_REFUSAL = (
    "{what} is a person's decision: sign in to the admin and {verb} there; no API token "
    "{verb}s, a superuser's included"
)


class RegistryViewSet(viewsets.GenericViewSet):
    """Token, role permission per action, declared query filters, ids checked before a query."""

    permission_classes: ClassVar = [HasApiToken, HoldsRolePermission]
    action_permissions: ClassVar[dict[str, str]] = {}
    filter_serializer: ClassVar[type[Any] | None] = None
    lookup_value_regex = "[^/]+"

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """DRF's ``initial`` with the rate limit before the permission check, so a token that
        is refused (and each refusal audited) is limited like any other."""
        self.format_kwarg = self.get_format_suffix(**kwargs)
        request.accepted_renderer, request.accepted_media_type = self.perform_content_negotiation(
            request
        )
        request.version, request.versioning_scheme = self.determine_version(
            request, *args, **kwargs
        )
        self.perform_authentication(request)
        self.check_throttles(request)
        self.check_permissions(request)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            idempotency_key(request)  # a malformed key is refused on every write, used or not
        self.refuse_unknown_query_parameters(request)

    def known_query_parameters(self) -> set[str]:
        if self.action == "list":
            paging = (
                {"limit", "offset"} if self.pagination_class is NamePagination
                else {"cursor", "page_size"}
            )  # fmt: skip
            fields = set(self.filter_serializer().fields) if self.filter_serializer else set()
            return fields | paging
        if self.action == "export":
            return set(s.ExportFormatFilter().fields)
        return set()

    def refuse_unknown_query_parameters(self, request: Request) -> None:
        """A misspelt filter must not silently return every row."""
        unknown = sorted(set(request.query_params) - self.known_query_parameters())
        if unknown:
            known = sorted(self.known_query_parameters())
            raise exceptions.ValidationError(
                {
                    unknown[0][:60]: [
                        f"unknown query parameter; this resource takes {known or 'none'}"
                    ]
                }
            )

    def filter_queryset(self, queryset: QuerySet) -> QuerySet:
        if self.filter_serializer is None or self.action != "list":
            return queryset
        return apply_filters(queryset, self.filter_serializer, self.request.query_params)

    def get_object(self) -> Any:
        raw = str(self.kwargs.get(self.lookup_field, ""))
        if not raw.isdigit() or not raw.isascii() or len(raw) > MAX_ID_DIGITS:
            raise exceptions.NotFound(f"no {self.resource_name()} with id {raw[:40]!r}")
        return super().get_object()

    def resource_name(self) -> str:
        return str(self.get_queryset().model._meta.verbose_name)


def apply_filters(queryset: QuerySet, serializer_class: type[Any], params: Any) -> QuerySet:
    empty = sorted(name for name in serializer_class().fields if params.get(name, None) == "")
    if empty:
        # A form would read an empty field as "not given"; a query asks for something.
        raise exceptions.ValidationError(
            {empty[0]: ["is empty: give a value, or leave the parameter out"]}
        )
    checked = serializer_class(data=params)
    checked.is_valid(raise_exception=True)
    for name, value in checked.validated_data.items():
        if value in ("true", "false"):
            value = value == "true"
        queryset = queryset.filter(**{serializer_class.lookups[name]: value})
    return queryset


def created(data: dict[str, Any], code: int = status.HTTP_201_CREATED) -> Response:
    return Response(data, status=code, headers={"Location": data["url"]})


# --- model names and versions -----------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(
        summary="Model names, with their number of versions and the latest",
        parameters=[s.ModelNameFilter],
    )
)
class ModelNameViewSet(RegistryViewSet, mixins.ListModelMixin):
    serializer_class = s.ModelNameSerializer
    pagination_class = NamePagination
    action_permissions: ClassVar = {"list": "view_modelversion"}
    filter_serializer = s.ModelNameFilter

    def get_queryset(self) -> QuerySet:
        return (
            ModelVersion.objects.values("name")
            .annotate(
                versions=Count("id"),
                latest_version=Max("version"),
                latest_created_at=Max("created_at"),
            )
            .order_by("name")
        )


@extend_schema_view(
    list=extend_schema(summary="Model versions, newest first", parameters=[s.VersionFilter]),
    retrieve=extend_schema(
        summary="A version: state, health, lineage, gates, evidence runs, approvals",
        responses=s.VersionDetailSerializer,
    ),
)
class VersionViewSet(RegistryViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.VersionSerializer
    filter_serializer = s.VersionFilter
    action_permissions: ClassVar = {
        "list": "view_modelversion",
        "retrieve": "view_modelversion",
        "create": "register_modelversion",
        "validate": "validate_modelversion",
        "paper": "papertrade_modelversion",
        "stage": "stage_modelversion",
        "deploy": "deploy_modelversion",
    }

    def get_queryset(self) -> QuerySet:
        queryset = ModelVersion.objects.select_related("created_by").order_by("-id")
        if self.action == "retrieve":
            queryset = queryset.select_related("approval_requested_by").prefetch_related(
                "approvals__suspensions",
                "approvals__decided_by",
                "approvals__requested_by",
                "validation_runs__requested_by",
                "paper_runs__requested_by",
                "deployments__target",
            )
        return queryset

    def get_serializer_class(self) -> type[Any]:
        return s.VersionDetailSerializer if self.action == "retrieve" else s.VersionSerializer

    @extend_schema(
        summary="Register a model trained elsewhere (the admin's upload form, over HTTP)",
        description=(
            "Multipart upload of the ONNX file, its metadata JSON and an optional plot. "
            "The same checks as the admin form: size, metadata, an out-of-process ONNX check, "
            "lineage. A refused upload leaves nothing in the store. Send an Idempotency-Key to "
            "make a retry safe."
        ),
        request={"multipart/form-data": s.RegisterInput},
        responses={201: s.VersionDetailSerializer},
    )
    def create(self, request: Request) -> Response:
        def register() -> Response:
            form = s.RegisterInput(data=request.data)
            form.is_valid(raise_exception=True)
            version = model_version_register_upload(
                onnx_upload=form.validated_data["onnx_file"],
                metadata_upload=form.validated_data["metadata_file"],
                plot_upload=form.validated_data.get("plot_file"),
                registered_by=request.user,
                allow_missing_conditions=form.validated_data.get("allow_missing_conditions"),
            )
            fresh = self.get_queryset().get(pk=version.pk)
            return created(s.VersionDetailSerializer(fresh, context={"request": request}).data)

        return run_once(request, register)

    def _request_run(self, request: Request, pk: str, requester: Any, serializer: Any) -> Response:
        version = self.get_object()

        def queue() -> Response:
            s.EmptyInput(data=request.data).is_valid(raise_exception=True)
            run = requester(model_version=version, requested_by=request.user)
            return created(serializer(run, context={"request": request}).data, 202)

        return run_once(request, queue)

    @extend_schema(
        summary="Request a validation run under the policy",
        request=s.EmptyInput,
        responses={202: s.ValidationRunSerializer},
    )
    @action(detail=True, methods=["post"])
    def validate(self, request: Request, pk: str) -> Response:
        return self._request_run(
            request, pk, runs.validation_run_request, s.ValidationRunSerializer
        )

    @extend_schema(
        summary="Request a paper trading run under the policy",
        request=s.EmptyInput,
        responses={202: s.PaperRunSerializer},
    )
    @action(detail=True, methods=["post"])
    def paper(self, request: Request, pk: str) -> Response:
        return self._request_run(request, pk, runs.paper_run_request, s.PaperRunSerializer)

    def _deploy(self, request: Request, environment: str) -> Response:
        version = self.get_object()

        def deploy() -> Response:
            form = s.DeployInput(data=request.data)
            form.is_valid(raise_exception=True)
            target = DeploymentTarget.objects.filter(
                name=form.validated_data["target"], environment=environment
            ).first()
            if target is None:
                raise exceptions.ValidationError(
                    {"target": [f"no {environment} target named {form.validated_data['target']!r}"]}
                )
            deployment = deployments.deployment_request(
                model_version=version,
                target=target,
                requested_by=request.user,
                force_reason=form.validated_data["force_reason"],
                schedule_if_closed=form.validated_data["schedule"],
            )
            return created(
                s.DeploymentSerializer(deployment, context={"request": request}).data, 202
            )

        return run_once(request, deploy)

    @extend_schema(
        summary="Deploy to a staging target and check compatibility (ML engineer)",
        request=s.DeployInput,
        responses={202: s.DeploymentSerializer},
    )
    @action(detail=True, methods=["post"])
    def stage(self, request: Request, pk: str) -> Response:
        return self._deploy(request, Environment.STAGING)

    @extend_schema(
        summary="Deploy an approved version to a production target (Deployer)",
        request=s.DeployInput,
        responses={202: s.DeploymentSerializer},
    )
    @action(detail=True, methods=["post"])
    def deploy(self, request: Request, pk: str) -> Response:
        return self._deploy(request, Environment.PRODUCTION)

    def _refuse_decision(self, request: Request, pk: str, what: str, verb: str) -> Response:
        reason = APPROVAL_REFUSAL.format(what=what, verb=verb)
        version = ModelVersion.objects.filter(pk=int(pk)).first() if _is_id(pk) else None
        record_api_refusal(request, action=verb, reason=reason, obj=version)
        raise ApprovalRefused(reason)

    @extend_schema(
        summary="Refused: approving is a person's act in the admin",
        request=None,
        responses={403: OpenApiResponse(description="Always: no token approves.")},
    )
    @action(detail=True, methods=["post"])
    def approve(self, request: Request, pk: str) -> Response:
        return self._refuse_decision(request, pk, "Approving a version", "approve")

    @extend_schema(
        summary="Refused: rejecting is a person's act in the admin",
        request=None,
        responses={403: OpenApiResponse(description="Always: no token rejects.")},
    )
    @action(detail=True, methods=["post"])
    def reject(self, request: Request, pk: str) -> Response:
        return self._refuse_decision(request, pk, "Rejecting a version", "reject")


def _is_id(raw: str) -> bool:
    return raw.isdigit() and raw.isascii() and len(raw) <= MAX_ID_DIGITS


# --- runs ---------------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Validation runs, newest first", parameters=[s.ValidationRunFilter]),
    retrieve=extend_schema(summary="A validation run: metrics, gates, verdict and policy"),
)
class ValidationRunViewSet(RegistryViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.ValidationRunSerializer
    filter_serializer = s.ValidationRunFilter
    action_permissions: ClassVar = {"list": "view_validationrun", "retrieve": "view_validationrun"}
    queryset = ValidationRun.objects.select_related("model_version", "requested_by")


@extend_schema_view(
    list=extend_schema(summary="Paper trading runs, newest first", parameters=[s.RunFilter]),
    retrieve=extend_schema(summary="A paper trading run: metrics, gates and verdict"),
)
class PaperRunViewSet(RegistryViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.PaperRunSerializer
    filter_serializer = s.RunFilter
    action_permissions: ClassVar = {
        "list": "view_papertradingrun",
        "retrieve": "view_papertradingrun",
    }
    queryset = PaperTradingRun.objects.select_related("model_version", "requested_by")


# --- targets and deployments ---------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(summary="Deployment targets and what each serves now",
                       parameters=[s.TargetFilter]),
    retrieve=extend_schema(summary="A target and what it serves now"),
)  # fmt: skip
class TargetViewSet(RegistryViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.TargetSerializer
    filter_serializer = s.TargetFilter
    action_permissions: ClassVar = {
        "list": "view_deploymenttarget",
        "retrieve": "view_deploymenttarget",
        "rollback": "rollback_modelversion",
    }
    queryset = DeploymentTarget.objects.prefetch_related("hosts")

    @extend_schema(
        summary="Roll a production target back (Deployer)",
        request=s.RollbackInput,
        responses={202: s.DeploymentSerializer},
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str) -> Response:
        target = self.get_object()

        def roll_back() -> Response:
            form = s.RollbackInput(data=request.data)
            form.is_valid(raise_exception=True)
            if target.environment != Environment.PRODUCTION:
                raise LifecycleConflict(
                    f"{target.name} is a {target.environment} target; rollback is for production"
                )
            deployment = deployments.rollback_request(
                target=target,
                requested_by=request.user,
                comment=form.validated_data["comment"],
                to_version_number=form.validated_data.get("to_version"),
                model_name=form.validated_data.get("model_name"),
            )
            return created(
                s.DeploymentSerializer(deployment, context={"request": request}).data, 202
            )

        return run_once(request, roll_back)


@extend_schema_view(
    list=extend_schema(summary="Deployments and rollbacks, newest first",
                       parameters=[s.DeploymentFilter]),
    retrieve=extend_schema(summary="A deployment with its steps"),
)  # fmt: skip
class DeploymentViewSet(RegistryViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.DeploymentSerializer
    filter_serializer = s.DeploymentFilter
    action_permissions: ClassVar = {"list": "view_deployment", "retrieve": "view_deployment"}
    queryset = Deployment.objects.select_related(
        "target", "model_version", "requested_by", "approval__decided_by"
    )

    @extend_schema(
        summary="Cancel a deployment scheduled for its target's next window",
        request=s.CancelInput,
        responses={200: s.DeploymentSerializer},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        deployment = self.get_object()
        needed = (
            "stage_modelversion"
            if deployment.target.environment == Environment.STAGING
            else "deploy_modelversion"
        )
        if not request.user.has_perm(f"models_registry.{needed}"):
            reason = (
                f"{request.user.get_username()} may not cancel deployments to "
                f"{deployment.target.name}: it needs the {role_holding(needed)} role ({needed})"
            )
            record_api_refusal(request, action="cancel", reason=reason, obj=deployment)
            raise exceptions.PermissionDenied(reason)

        def cancel() -> Response:
            form = s.CancelInput(data=request.data)
            form.is_valid(raise_exception=True)
            cancelled = deployments.deployment_cancel(
                deployment=deployment,
                cancelled_by=request.user,
                reason=form.validated_data["reason"],
            )
            fresh = self.get_queryset().get(pk=cancelled.pk)
            return Response(s.DeploymentSerializer(fresh, context={"request": request}).data)

        return run_once(request, cancel)


# --- audit --------------------------------------------------------------------------------


class PassThroughRenderer(renderers.BaseRenderer):
    """The export streams its own body; an error on the way is rendered as JSON."""

    charset = "utf-8"

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return renderers.JSONRenderer().render(data)


class CsvRenderer(PassThroughRenderer):
    media_type = "text/csv"
    format = "csv"


class JsonLinesRenderer(PassThroughRenderer):
    media_type = "application/x-ndjson"
    format = "jsonl"


@extend_schema_view(
    list=extend_schema(summary="Audit events, newest first", parameters=[s.AuditEventFilter]),
    retrieve=extend_schema(summary="An audit event with every hashed column"),
)
class AuditEventViewSet(RegistryViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    serializer_class = s.AuditEventSerializer
    filter_serializer = s.AuditEventFilter
    action_permissions: ClassVar = {
        "list": "view_auditevent",
        "retrieve": "view_auditevent",
        "export": "export_audit",
        "verify_chain": "view_auditevent",
        "verify_export": "export_audit",
    }
    queryset = AuditEvent.objects.all()

    @extend_schema(
        summary="Export every matching event (Auditor): the admin's export, CSV or JSON Lines",
        parameters=[s.ExportFormatFilter],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
        },
    )
    @action(
        detail=False,
        methods=["get"],
        renderer_classes=[JsonLinesRenderer, CsvRenderer, renderers.JSONRenderer],
    )
    def export(self, request: Request) -> StreamingHttpResponse:
        checked = s.ExportFormatFilter(data=request.query_params)
        checked.is_valid(raise_exception=True)
        fmt = checked.validated_data.pop("format")
        queryset = apply_filters(
            AuditEvent.objects.all(), s.AuditEventFilter,
            {k: v for k, v in request.query_params.items() if k != "format"},
        )  # fmt: skip
        return exports.stream_rows(
            "audit_events", exports.AUDIT_COLUMNS, exports.audit_rows(queryset), fmt
        )

    @extend_schema(
        summary="Verify the whole audit chain and its anchors (as the admin's Verify page)",
        request=None,
        responses=s.ChainReportSerializer,
    )
    @action(detail=False, methods=["post"], url_path="verify-chain")
    def verify_chain(self, request: Request) -> Response:
        report = verify_audit_chain()
        return Response(s.ChainReportSerializer(report).data)

    @extend_schema(
        summary="Re-check an export file against the chain (as `verify_audit_log --export`)",
        request={"multipart/form-data": s.VerifyExportInput},
        responses=s.ExportReportSerializer,
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="verify-export",
        parser_classes=[parsers.MultiPartParser],
    )
    def verify_export(self, request: Request) -> Response:
        form = s.VerifyExportInput(data=request.data)
        form.is_valid(raise_exception=True)
        upload = form.validated_data["file"]
        with tempfile.TemporaryDirectory(prefix="tradebot-export-") as folder:
            first = upload.read(1)
            upload.seek(0)
            path = Path(folder) / ("export.jsonl" if first == b"{" else "export.csv")
            with path.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            try:
                report = exports.verify_export(path)
            except (UnicodeDecodeError, TypeError, AttributeError) as exc:
                report = exports.ExportReport(False, 0, None, None, f"not an audit export: {exc}")
        data = {**report.__dict__, "text": exports.export_report_text(report)}
        return Response(s.ExportReportSerializer(data).data)


# --- who am I, problem types, 404 ------------------------------------------------------------


class WhoAmIView(APIView):
    permission_classes: ClassVar = [HasApiToken]

    @extend_schema(summary="The token's user, roles and expiry", responses=s.WhoAmISerializer)
    def get(self, request: Request) -> Response:
        token: ApiToken = request.auth
        user = request.user
        names = sorted(
            user.groups.filter(name__in=roles.ROLE_PERMISSIONS).values_list("name", flat=True)
        )
        data = {
            "username": user.get_username(),
            "roles": names,
            "permissions": sorted(p.split(".", 1)[1] for p in user.get_all_permissions()
                                  if p.startswith("models_registry.")),
            "token_name": token.name,
            "token_prefix": token.prefix,
            "token_expires_at": token.expires_at,
        }  # fmt: skip
        return Response(s.WhoAmISerializer(data).data)


@extend_schema(exclude=True)
@api_view(["GET"])
@permission_classes([AllowAny])
def problem_type_view(request: Request, slug: str) -> Response:
    """What a problem ``type`` URI means (RFC 9457 asks that it be documentation)."""
    if slug not in PROBLEM_TYPES:
        raise exceptions.NotFound(f"no problem type {slug[:40]!r}")
    title, description = PROBLEM_TYPES[slug]
    return Response({"type": slug, "title": title, "description": description})


@extend_schema(exclude=True)
@api_view(["GET"])
@permission_classes([AllowAny])
def api_root(request: Request) -> Response:
    return Response(
        {
            "schema": reverse("api-schema", request=request),
            "docs": reverse("api-docs", request=request),
            "versions": reverse("api:version-list", request=request),
        }
    )


def api_not_found(
    request: HttpRequest, exception: Exception | None = None
) -> JsonResponse | HttpResponse:
    """Django's 404 under /api/: a problem document, not the HTML page."""
    from django.views.defaults import page_not_found

    if request.path.startswith("/api/"):
        hint = "" if request.path.endswith("/") else f"; did you mean {request.path[:200]}/?"
        return problem_response(
            request, slug="not-found", status_code=404,
            detail=f"the API has no resource at {request.path[:200]}{hint}",
        )  # fmt: skip
    return page_not_found(request, exception or Exception("not found"))
