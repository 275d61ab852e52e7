"""API views: thin. They check the role, validate the shape, call a service and render the result."""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import Http404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from mlops.inference.encoders import ModelUnavailable
from mlops.models import ModelVersion
from search import services as search_services
from search.deflection import deflect
from search.models import Article
from tags.dashboard import change_tag
from triage.models import Team, Ticket
from triage.services import accept_routing, correct_routing, create_ticket
from triage.team_services import set_team_routing

from . import reads, services
from .models import IDEMPOTENCY_KEY_MAX
from .parsers import JSONParser
from .permissions import CanCreateTickets, IsAdmin, IsAgent
from .serializers import (
    ArticleFeedbackResultSerializer,
    ArticleFeedbackSerializer,
    ArticleSerializer,
    CorrectionSerializer,
    DeflectionSerializer,
    DeflectRequestSerializer,
    LabelSerializer,
    ModelVersionSerializer,
    TagChangeSerializer,
    TagLabelSerializer,
    TeamRoutingSerializer,
    TeamSerializer,
    TicketCreateSerializer,
    TicketDetailSerializer,
    TicketFilterSerializer,
    TicketSerializer,
)

ID = r"[0-9]+"
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    # Printable ASCII without spaces at either end (HTTP servers strip those), as create() checks.
    {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_MAX, "pattern": r"^[!-~]([ -~]*[!-~])?$"},
    OpenApiParameter.HEADER,
    description=(
        "Any unique string up to 255 characters. A retry with the same key and body returns the first "
        "response again (header Idempotent-Replayed: true); the same key with another body is refused (422)."
    ),
)


class Pagination(PageNumberPagination):
    """DRF's page numbers, strict: a ``page`` or ``page_size`` that is not a whole number in range is a 400
    (DRF would ignore a bad ``page_size`` and clamp a large one); a page past the last one is a 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200
    last_page_strings = ()  # the schema says page is an integer: no "last"

    def query_number(self, request, name: str, maximum: int | None = None) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        # At most 18 digits: int() of thousands of digits is refused by Python itself (ValueError).
        number = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 else None
        if number is None and raw.isascii() and raw.isdigit() and maximum is None:
            raise NotFound(f"Invalid page: {raw[:20]}… is past the last page.")
        if number is None or number < 1 or (maximum is not None and number > maximum):
            limit = f"from 1 to {maximum}" if maximum is not None else "from 1"
            raise ValidationError({name: [f"Must be a whole number {limit}."]})
        return number

    def get_page_size(self, request) -> int:
        return self.query_number(request, self.page_size_query_param, self.max_page_size) or self.page_size

    def get_page_number(self, request, paginator) -> int:
        return self.query_number(request, self.page_query_param) or 1

    def get_schema_operation_parameters(self, view) -> list[dict]:
        parameters = super().get_schema_operation_parameters(view)
        bounds = {
            self.page_query_param: {"minimum": 1},
            self.page_size_query_param: {"minimum": 1, "maximum": self.max_page_size},
        }
        for parameter in parameters:
            parameter["schema"].update(bounds[parameter["name"]])
        return parameters


class ApiViewSet(viewsets.GenericViewSet):
    parser_classes = [JSONParser]
    pagination_class = Pagination
    lookup_value_regex = ID


@extend_schema_view(
    list=extend_schema(summary="List tickets", parameters=[TicketFilterSerializer]),
    retrieve=extend_schema(summary="A ticket with its latest prediction, article suggestions and labels"),
)
class TicketViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    serializer_class = TicketSerializer

    def get_permissions(self):
        return [CanCreateTickets()] if self.action == "create" else [IsAgent()]

    def get_serializer_class(self):
        return {
            "retrieve": TicketDetailSerializer,
            "create": TicketCreateSerializer,
            "correct": CorrectionSerializer,
            "article_feedback": ArticleFeedbackSerializer,
            "change_tag": TagChangeSerializer,
        }.get(self.action, TicketSerializer)

    def get_queryset(self):
        if self.action in ("list", "retrieve"):
            # Rows, not model instances: api/reads.py builds the answer (what the serializers would).
            return reads.ticket_values()
        return (
            Ticket.objects.select_related("team")
            .annotate(latest_decision=reads.latest_decision())
            .order_by("-created_at", "-pk")
        )

    def list(self, request, *args, **kwargs):
        # A plain dict, not the QueryDict: DRF reads an empty form value as "not given", so
        # ?created_after= would filter nothing instead of being refused like any other bad date.
        filters = TicketFilterSerializer(data=request.query_params.dict())
        filters.is_valid(raise_exception=True)
        wanted = filters.validated_data
        tickets = self.get_queryset()
        if "team" in wanted:
            tickets = tickets.filter(team=wanted["team"])
        if "status" in wanted:
            tickets = tickets.filter(status=wanted["status"])
        if "decision" in wanted:
            tickets = tickets.filter(latest_decision=wanted["decision"])
        if "created_after" in wanted:
            tickets = tickets.filter(created_at__gte=wanted["created_after"])
        if "created_before" in wanted:
            tickets = tickets.filter(created_at__lt=wanted["created_before"])
        page = self.paginate_queryset(tickets)
        return self.get_paginated_response(reads.ticket_list(page))

    def retrieve(self, request, *args, **kwargs):
        row = reads.ticket_row(int(kwargs[self.lookup_field]))
        if row is None:
            # What DRF's get_object answers for a missing row.
            raise Http404(f"No {Ticket._meta.object_name} matches the given query.")
        self.check_object_permissions(request, row)
        return Response(reads.ticket_detail(row))

    @extend_schema(
        summary="Create a ticket",
        parameters=[IDEMPOTENCY_HEADER],
        request=TicketCreateSerializer,
        responses={
            201: TicketSerializer,
            200: OpenApiResponse(TicketSerializer, description="A ticket with this external_id already existed."),
            422: OpenApiResponse(description="The Idempotency-Key was used before with another body."),
        },
    )
    def create(self, request, *args, **kwargs):
        key = request.headers.get("Idempotency-Key")
        if key is not None and not (0 < len(key) <= IDEMPOTENCY_KEY_MAX and key.isascii() and key.isprintable()):
            return Response(
                {"Idempotency-Key": [f"must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII characters"]},
                status=status.HTTP_400_BAD_REQUEST,
            )
        serializer = TicketCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)

        def create() -> tuple[int, dict, Ticket]:
            try:
                ticket, created = create_ticket(serializer.validated_data, created_by=request.user)
            except IntegrityError:
                # Another request stored the same external_id between our check and insert: return that one.
                ticket, created = create_ticket(serializer.validated_data, created_by=request.user)
            body = TicketSerializer(self.get_queryset().get(pk=ticket.pk)).data
            return (status.HTTP_201_CREATED if created else status.HTTP_200_OK), body, ticket

        if key is None:
            # The answer is built before the ticket commits: a database that fails in between rolls the
            # ticket back and answers 503, so a client's retry never stores it twice.
            with transaction.atomic():
                code, body, _ticket = create()
            return Response(body, status=code)
        try:
            outcome = services.run_once(request.user, key, services.request_fingerprint(request.data), create)
        except services.IdempotencyKeyReused:
            return Response(
                {"detail": "This Idempotency-Key was already used with a different request body."},
                status=status.HTTP_422_UNPROCESSABLE_ENTITY,
            )
        response = Response(outcome.body, status=outcome.status)
        if outcome.replayed:
            response["Idempotent-Replayed"] = "true"
        return response

    @extend_schema(
        summary="Accept the routing (or the suggestion) as the ticket's label",
        request=None,
        responses={201: LabelSerializer},
    )
    @action(detail=True, methods=["post"])
    @transaction.atomic  # the answer is built before the label commits (see create)
    def accept(self, request, pk=None):
        label = accept_routing(self.get_object(), agent=request.user, source="api")
        return Response(LabelSerializer(label).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Correct the routing: label the ticket with the right team and route it there",
        responses={201: LabelSerializer},
    )
    @action(detail=True, methods=["post"])
    @transaction.atomic  # the answer is built before the label commits (see create)
    def correct(self, request, pk=None):
        ticket = self.get_object()
        serializer = CorrectionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        label = correct_routing(ticket, serializer.validated_data["team"], agent=request.user, source="api")
        return Response(LabelSerializer(label).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Say whether a suggested article helped with this ticket",
        responses={201: ArticleFeedbackResultSerializer},
    )
    @action(detail=True, methods=["post"], url_path="article-feedback")
    def article_feedback(self, request, pk=None):
        ticket = self.get_object()
        serializer = ArticleFeedbackSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        feedback = search_services.record_suggestion_feedback(
            ticket,
            serializer.validated_data["article"],
            helpful=serializer.validated_data["helpful"],
            agent=request.user,
        )
        return Response(ArticleFeedbackResultSerializer(feedback).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Withdraw your mark on an article for this ticket, and the question it taught the search",
        request=None,
        responses={204: None, 404: OpenApiResponse(description="No such ticket, article, or mark of yours.")},
    )
    @action(detail=True, methods=["delete"], url_path=rf"article-feedback/(?P<article_id>{ID})")
    def retract_article_feedback(self, request, pk=None, article_id=None):
        ticket = self.get_object()
        article = Article.objects.filter(pk=int(article_id)).first() if len(article_id) <= 18 else None
        if article is None:
            raise NotFound("No such article.")
        if not search_services.retract_suggestion_feedback(ticket, article, agent=request.user):
            raise NotFound("You have no mark on this article for this ticket.")
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Add or remove a tag on the ticket, as an agent (recorded as a tag label)",
        request=TagChangeSerializer,
        responses={201: TagLabelSerializer(many=True)},
    )
    @action(detail=True, methods=["post"], url_path="tags")
    def change_tag(self, request, pk=None):
        """Returns the labels recorded: adding a tag of a single-label set also removes the one set before."""
        ticket = self.get_object()
        serializer = TagChangeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        tag, action_ = serializer.validated_data["tag"], serializer.validated_data["action"]
        labels = change_tag(ticket, tag, action_, agent=request.user, source="api")
        return Response(TagLabelSerializer(labels, many=True).data, status=status.HTTP_201_CREATED)


class DeflectView(APIView):
    """Articles for a ticket still being written: a portal calls it as the customer types (debounced).

    The served retrieval without the reranker, and only the articles at or above the relevance cutoff
    (``search/deflection.py``); nothing is stored. Whoever may create tickets may call it.
    """

    parser_classes = [JSONParser]
    permission_classes = [CanCreateTickets]

    @extend_schema(
        summary="Articles that may answer a ticket before it is sent (deflection)",
        request=DeflectRequestSerializer,
        responses={
            200: DeflectionSerializer,
            503: OpenApiResponse(description="The embedding model is unavailable (Retry-After)."),
        },
    )
    def post(self, request):
        serializer = DeflectRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            result = deflect(serializer.validated_data["text"], limit=serializer.validated_data.get("limit"))
        except ModelUnavailable:
            response = Response(
                {"detail": "Article suggestions are unavailable right now."}, status=status.HTTP_503_SERVICE_UNAVAILABLE
            )
            response["Retry-After"] = str(settings.TRIAGE_RETRY_AFTER_SECONDS)
            return response
        return Response(DeflectionSerializer(result).data)


@extend_schema_view(list=extend_schema(summary="List teams"), retrieve=extend_schema(summary="A team"))
class TeamViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = Team.objects.order_by("name")
    serializer_class = TeamSerializer
    permission_classes = [IsAgent]


@extend_schema_view(
    list=extend_schema(summary="Routing mode and auto-route threshold of every team (admins)"),
    retrieve=extend_schema(summary="Routing mode and threshold of one team (admins)"),
    partial_update=extend_schema(summary="Change a team's mode or threshold; each change is audited (admins)"),
)
class ThresholdViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.UpdateModelMixin, ApiViewSet):
    queryset = Team.objects.order_by("name")
    serializer_class = TeamRoutingSerializer
    permission_classes = [IsAdmin]
    http_method_names = ["get", "patch", "head", "options"]

    def perform_update(self, serializer):
        data = serializer.validated_data
        set_team_routing(
            serializer.instance,
            mode=data.get("mode"),
            threshold=data.get("threshold"),
            user=self.request.user,
            reason=data.get("reason", ""),
        )


@extend_schema_view(
    list=extend_schema(summary="Routing model versions (admins)"),
    retrieve=extend_schema(summary="One model version with its metrics, calibration and thresholds (admins)"),
)
class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, ApiViewSet):
    queryset = ModelVersion.objects.order_by("-created_at", "-pk")
    serializer_class = ModelVersionSerializer
    permission_classes = [IsAdmin]


@extend_schema_view(
    list=extend_schema(summary="Knowledge-base articles"),
    retrieve=extend_schema(summary="One article"),
    create=extend_schema(
        summary="Create an article (admins); it is sanitised and indexed",
        responses={
            201: ArticleSerializer,
            200: OpenApiResponse(ArticleSerializer, description="Updated by external_id or URL."),
        },
    ),
    update=extend_schema(summary="Replace an article (admins)"),
    partial_update=extend_schema(summary="Change some fields of an article (admins)"),
    destroy=extend_schema(summary="Delete an article and its passages (admins)"),
)
class ArticleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    ApiViewSet,
):
    queryset = Article.objects.select_related("team").order_by("title", "pk")
    serializer_class = ArticleSerializer

    def get_permissions(self):
        return [IsAgent()] if self.action in ("list", "retrieve") else [IsAdmin()]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        # Upsert: an external_id or URL that is already stored updates that article (200).
        article, outcome = search_services.upsert_article(serializer.validated_data)
        code = status.HTTP_201_CREATED if outcome == "created" else status.HTTP_200_OK
        return Response(self.get_serializer(article).data, status=code)

    def perform_update(self, serializer):
        serializer.instance, _outcome = search_services.upsert_article(
            serializer.validated_data, article=serializer.instance
        )

    def perform_destroy(self, instance):
        search_services.delete_article(instance)
