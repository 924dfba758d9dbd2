from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from knox.models import AuthToken
from rest_framework import generics, permissions, serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from .models import Movie, Rating


class UserSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]


class RegisterSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email", "password"]
        extra_kwargs = {"password": {"write_only": True}, "email": {"required": True}}

    def create(self, data):
        return User.objects.create_user(data["username"], data["email"], data["password"])


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField()

    def validate(self, data):
        user = authenticate(**data)
        if user and user.is_active:
            return user
        raise serializers.ValidationError("Incorrect Credentials")


def with_token(user):
    instance, token = AuthToken.objects.create(user)
    return Response(
        {"user": UserSerializer(user).data, "token": token, "expiry": instance.expiry}
    )


class TokenView(generics.GenericAPIView):
    """Answers a valid body with its user and a new token."""

    permission_classes = [permissions.AllowAny]

    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return with_token(self.user_of(serializer))


class RegisterView(TokenView):
    serializer_class = RegisterSerializer

    def user_of(self, serializer):
        return serializer.save()


class LoginView(TokenView):
    serializer_class = LoginSerializer

    def user_of(self, serializer):
        return serializer.validated_data


class MovieSerializer(serializers.ModelSerializer):
    class Meta:
        model = Movie
        fields = ["id", "title", "director"]


class Movies(generics.ListCreateAPIView):
    queryset = Movie.objects.order_by("id")
    serializer_class = MovieSerializer

    def perform_create(self, serializer):
        serializer.save(added_by=self.request.user)


class RatingSerializer(serializers.ModelSerializer):
    rating = serializers.IntegerField(min_value=1, max_value=5)

    class Meta:
        model = Rating
        fields = ["id", "movie", "rating"]
        validators = []


class Ratings(generics.ListCreateAPIView):
    queryset = Rating.objects.order_by("id")
    serializer_class = RatingSerializer

    def perform_create(self, serializer):
        movie = serializer.validated_data["movie"]
        user = self.request.user
        if movie.added_by_id == user.id or Rating.objects.filter(user=user, movie=movie).exists():
            raise PermissionDenied("You cant rate it ")
        serializer.save(user=user)
