from .resnet_encoder import ResnetEncoder
from .depth_decoder import DepthDecoder
from .pose_decoder import PoseDecoder
from .pose_cnn import PoseCNN
from .factory import (BACKBONES, RECORDED, DepthNet, backbone, build_encoder, encoder_record, load_depth_net,
                      load_pose_net, state_record, weights_record)
